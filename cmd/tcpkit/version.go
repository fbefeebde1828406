package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// buildVersion is the release version, set at link time with
//
//	go build -ldflags "-X main.buildVersion=v1.2.3" ./cmd/tcpkit
//
// When it is empty, the version comes from the module's build information
// (a version for `go install ...@v1.2.3`, "devel" for a local build).
var buildVersion = ""

// version returns the version of this build.
func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Version == "" || bi.Main.Version == "(devel)" {
		return "devel"
	}
	return bi.Main.Version
}

// revision returns the VCS revision the binary was built from, if the
// build recorded it.
func revision() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return ""
	}
	return rev + dirty
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of tcpkit",
		Long:  "Print the version of tcpkit, the Go version it was built with, and its platform.",
		Example: `  tcpkit version
  tcpkit --version      # the version alone`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			line := "tcpkit " + version()
			if rev := revision(); rev != "" {
				line += " (" + rev + ")"
			}
			fmt.Fprintf(a.stdout, "%s\n%s %s/%s\n", line, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
