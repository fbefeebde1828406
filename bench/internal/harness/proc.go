// Package harness holds what the fairness and soak drivers share: starting
// a server process pinned to a CPU and waiting for it to say it is ready,
// stopping it within a bound, reading its CPU time from /proc, latency
// percentiles, and Markdown formatting of figures.
package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A Proc is a server process started by Start.
type Proc struct {
	Cmd   *exec.Cmd
	PID   int
	Ready map[string]string // the key=value fields of its "ready" line

	waited chan struct{} // closed once Wait has returned
	err    error         // Wait's error, once waited is closed
}

// Start runs path with args pinned to cpu (taskset -c, which execs it, so
// the process's pid is the server's), with env added to this process's
// environment, its standard output copied to stdoutFile and its standard
// error to stderrFile. It waits, up to timeout, for a line on standard
// output that begins with "ready" and returns its key=value fields in
// Proc.Ready. A negative cpu runs the program unpinned.
func Start(path string, args []string, cpu int, env []string, stdoutFile, stderrFile string, timeout time.Duration) (*Proc, error) {
	name, argv := path, args
	if cpu >= 0 {
		name, argv = "taskset", append([]string{"-c", strconv.Itoa(cpu), path}, args...)
	}
	cmd := exec.Command(name, argv...)
	cmd.Env = append(os.Environ(), env...)
	out, err := os.Create(stdoutFile)
	if err != nil {
		return nil, err
	}
	errf, err := os.Create(stderrFile)
	if err != nil {
		out.Close()
		return nil, err
	}
	cmd.Stderr = errf
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		out.Close()
		errf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		out.Close()
		errf.Close()
		return nil, err
	}
	p := &Proc{Cmd: cmd, PID: cmd.Process.Pid, waited: make(chan struct{})}
	ready := make(chan map[string]string, 1)
	copied := make(chan struct{})
	go func() {
		// Copies standard output until the process closes it: bounded by
		// the process's life, which Stop bounds.
		defer close(copied)
		defer out.Close()
		sc := bufio.NewScanner(pipe)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(out, line)
			if !sent && strings.HasPrefix(line, "ready") {
				ready <- Fields(line)
				sent = true
			}
		}
		io.Copy(out, pipe) // after a line too long for the scanner
	}()
	go func() {
		// exec.Cmd wants StdoutPipe read to its end before Wait.
		<-copied
		p.err = cmd.Wait()
		errf.Close()
		close(p.waited)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case f := <-ready:
		// Pinned: taskset has exec'd the server by now, since the server
		// wrote the line.
		p.Ready = f
		return p, nil
	case <-p.waited:
		select {
		case f := <-ready: // ready, then exited at once: the caller will see
			p.Ready = f
			return p, nil
		default:
		}
		return nil, fmt.Errorf("%s exited before it was ready (%v); see %s", path, p.err, stderrFile)
	case <-t.C:
		p.Stop(time.Second)
		return nil, fmt.Errorf("%s was not ready within %v; see %s", path, timeout, stderrFile)
	}
}

// Fields parses the key=value words of line; other words are skipped.
func Fields(line string) map[string]string {
	f := map[string]string{}
	for _, w := range strings.Fields(line) {
		if k, v, ok := strings.Cut(w, "="); ok {
			f[k] = v
		}
	}
	return f
}

// Stop sends the process SIGTERM and waits up to grace for it to exit,
// then kills it. It reports whether the process exited on its own within
// grace, and its exit error (nil for status 0).
func (p *Proc) Stop(grace time.Duration) (exited bool, err error) {
	select {
	case <-p.waited:
		return true, p.err
	default:
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.waited:
		return true, p.err
	case <-t.C:
	}
	p.Cmd.Process.Kill()
	<-p.waited
	return false, p.err
}

// Exited returns a channel closed once the process has exited.
func (p *Proc) Exited() <-chan struct{} { return p.waited }

// clockTick is the unit of the CPU times in /proc/PID/stat: USER_HZ,
// 100 on every Linux this runs on.
const clockTick = 10 * time.Millisecond

// CPUTime returns the user and system time that process pid has used, from
// /proc/PID/stat (10 ms resolution).
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("harness: malformed /proc/PID/stat")
	}
	f := strings.Fields(s[i+1:])
	// After the command: state is field 3 of stat, f[0]; utime and stime
	// are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("harness: short /proc/PID/stat")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(u+st) * clockTick, nil
}

// FDs returns the number of open descriptors of process pid, from
// /proc/PID/fd.
func FDs(pid int) (int, error) {
	d, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(d), err
}

// Sleep waits for d or until ctx is done, and reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// BusyTicks returns the clock ticks (10 ms) that the given CPUs have
// spent busy since boot, every process together: user, nice, system and
// steal time (the hypervisor's, for other machines) from /proc/stat. Irq
// and softirq time are left out: a process is not charged for them, and
// on loopback they are mostly the measured traffic's own.
func BusyTicks(cpus []int) (int64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	want := map[string]bool{}
	for _, c := range cpus {
		want["cpu"+strconv.Itoa(c)] = true
	}
	var n int64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !want[f[0]] {
			continue
		}
		for _, i := range []int{1, 2, 3, 8} {
			v, _ := strconv.ParseInt(f[i], 10, 64)
			n += v
		}
	}
	return n, nil
}

// AllowedCPUs returns the CPUs this process may run on, from
// Cpus_allowed_list in /proc/self/status.
func AllowedCPUs() ([]int, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(line, "Cpus_allowed_list:")
		if !ok {
			continue
		}
		return ParseCPUList(strings.TrimSpace(v))
	}
	return nil, errors.New("harness: no Cpus_allowed_list in /proc/self/status")
}

// ParseCPUList parses a CPU list such as "0-2,5".
func ParseCPUList(s string) ([]int, error) {
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("harness: bad CPU list %q", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b-a > 4096 {
				return nil, fmt.Errorf("harness: bad CPU list %q", s)
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}
