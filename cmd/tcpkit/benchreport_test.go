package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcpkit/tcpkit/internal/loadgen"
	"golang.org/x/net/html"
)

// parsedReport is what TestBenchReport reads back from a report page.
type parsedReport struct {
	svgs      map[string]*html.Node // by id
	result    *loadgen.Result       // the embedded JSON
	external  []string              // attributes that refer outside the page
	text      string                // the text of the page, scripts and styles aside
	tags      map[string]int
	polylines map[string][]string // the points of the polylines in each chart
}

// parseReport parses the report page at path.
func parseReport(t *testing.T, path string) *parsedReport {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"http://", "https://", "//cdn", "url("} {
		if strings.Contains(string(b), u) {
			t.Errorf("the report contains %q: it must need nothing from outside", u)
		}
	}
	doc, err := html.Parse(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("the report is not HTML: %v", err)
	}
	p := &parsedReport{svgs: map[string]*html.Node{}, tags: map[string]int{}, polylines: map[string][]string{}}
	var text strings.Builder
	var walk func(n *html.Node, svg string)
	walk = func(n *html.Node, svg string) {
		if n.Type == html.TextNode && n.Parent != nil && n.Parent.Data != "script" && n.Parent.Data != "style" {
			text.WriteString(n.Data + " ")
		}
		if n.Type == html.ElementNode {
			p.tags[n.Data]++
			attr := map[string]string{}
			for _, a := range n.Attr {
				attr[a.Key] = a.Val
				switch a.Key {
				case "src", "href", "action", "srcset", "poster", "data":
					p.external = append(p.external, n.Data+" "+a.Key+"="+a.Val)
				}
			}
			switch n.Data {
			case "svg":
				svg = attr["id"]
				p.svgs[svg] = n
			case "polyline":
				if attr["class"] == "line" {
					p.polylines[svg] = append(p.polylines[svg], attr["points"])
				}
			case "script":
				if attr["type"] != "application/json" {
					t.Errorf("a script that runs: %v", n.Attr)
				}
				if attr["id"] == "tcpkit-result" && n.FirstChild != nil {
					p.result = &loadgen.Result{}
					if err := json.Unmarshal([]byte(n.FirstChild.Data), p.result); err != nil {
						t.Errorf("the embedded result: %v", err)
					}
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, svg)
		}
	}
	walk(doc, "")
	p.text = strings.Join(strings.Fields(text.String()), " ")
	return p
}

// TestBenchReport writes --report pages for an open-loop run, a closed
// loop and a stream run (no latency), parses them, and checks that each
// stands alone and holds the spectrum, the series and the parameters.
func TestBenchReport(t *testing.T) {
	e := startEcho(t, "--quiet", "--greeting", "", "127.0.0.1:0")
	dir := t.TempDir()
	t.Run("open-loop", func(t *testing.T) {
		path := filepath.Join(dir, "open.html")
		r := runCLI(t, nil, "bench", "--rate", "2000", "-c", "2", "-d", "1500ms", "--warmup", "0", "--report", path, e.addr())
		if r.code != exitOK {
			t.Fatalf("bench exited %d: %s", r.code, r.stderr)
		}
		p := parseReport(t, path)
		if len(p.external) > 0 {
			t.Errorf("references outside the page: %q", p.external)
		}
		for _, id := range []string{"spectrum", "throughput", "latency"} {
			if p.svgs[id] == nil {
				t.Errorf("no <svg id=%q>", id)
			}
		}
		res := p.result
		if res == nil {
			t.Fatal("no embedded result")
		}
		if res.Open == nil || res.Open.Requested != 2000 || len(res.Series) != 2 || len(res.Spectrum) < 20 {
			t.Errorf("embedded result: open loop %+v, %d seconds, %d spectrum points", res.Open, len(res.Series), len(res.Spectrum))
		}
		// One point per percentile below 100 on the spectrum; one per
		// second on the series charts.
		if pts := p.polylines["spectrum"]; len(pts) != 1 || len(strings.Fields(pts[0])) != len(res.Spectrum)-1 {
			t.Errorf("spectrum line %q, want %d points", pts, len(res.Spectrum)-1)
		}
		if pts := p.polylines["throughput"]; len(pts) != 1 || len(strings.Fields(pts[0])) != len(res.Series) {
			t.Errorf("throughput line %q, want %d points", pts, len(res.Series))
		}
		if pts := p.polylines["latency"]; len(pts) != 2 {
			t.Errorf("latency lines %q, want p50 and p99 (and max, dashed)", pts)
		}
		for _, want := range []string{"ping-pong at 2,000 msgs/s", "--rate=2000", "msgs/s requested", "msgs/s achieved",
			"99.9%", "99.999%", "percentile", "seconds into the measured window", "scheduled", "connections 2",
			"message size 64 bytes", "in flight 1024 per connection", "errors none"} {
			if !strings.Contains(p.text, want) {
				t.Errorf("the page's text lacks %q:\n%s", want, p.text)
			}
		}
		if p.tags["circle"] < len(res.Spectrum)-1+2*len(res.Series) {
			t.Errorf("%d hover points, want one per spectrum point and per second of each line", p.tags["circle"])
		}
		// bench compare reads a report page as it does --json output.
		r = runCLI(t, nil, "bench", "compare", path, path)
		if r.code != exitOK || !strings.Contains(r.stdout, "2,000 msgs/s") {
			t.Errorf("bench compare on a report page exited %d: %s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("closed-loop", func(t *testing.T) {
		path := filepath.Join(dir, "closed.html")
		r := runCLI(t, nil, "bench", "--json", "-c", "2", "-n", "2000", "--warmup", "0", "--report", path, e.addr())
		if r.code != exitOK || !strings.HasPrefix(r.stdout, "{") {
			t.Fatalf("bench exited %d: %s %s", r.code, r.stdout, r.stderr)
		}
		p := parseReport(t, path)
		if p.result == nil || p.result.Open != nil || len(p.result.Series) == 0 || p.svgs["spectrum"] == nil {
			t.Errorf("closed loop report: svgs %v, result %+v", p.svgs, p.result)
		}
	})
	t.Run("stream", func(t *testing.T) {
		path := filepath.Join(dir, "stream.html")
		r := runCLI(t, nil, "bench", "--mode", "stream", "-d", "300ms", "--warmup", "0", "--report", path, e.addr())
		if r.code != exitOK {
			t.Fatalf("bench exited %d: %s", r.code, r.stderr)
		}
		p := parseReport(t, path)
		if p.svgs["spectrum"] != nil || p.svgs["latency"] != nil || p.svgs["throughput"] == nil {
			t.Errorf("stream report: charts %v, want throughput only", p.svgs)
		}
	})
	t.Run("unwritable", func(t *testing.T) {
		r := runCLI(t, nil, "bench", "-n", "10", "--warmup", "0", "--report", filepath.Join(dir, "no", "such", "dir.html"), e.addr())
		if r.code != exitError || !strings.Contains(r.stderr, "--report") || !strings.Contains(r.stdout, "msgs/s") {
			t.Errorf("bench --report into a missing directory: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})
}
