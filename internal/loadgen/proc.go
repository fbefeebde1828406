package loadgen

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// ProcCPU returns the CPU time, user and system, that process pid has used
// so far, all of its threads included, from /proc/PID/stat (Linux only).
// Its resolution is one clock tick, 10ms on most systems.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may itself hold
	// spaces and parentheses: the fields that follow start after the last
	// ')'. They are field 3 (state) onwards; utime and stime are fields 14
	// and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("loadgen: /proc/%d/stat: no command name", pid)
	}
	fields := bytes.Fields(b[i+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("loadgen: /proc/%d/stat: %d fields after the command name, want 13 or more", pid, len(fields))
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(string(f), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("loadgen: /proc/%d/stat: %v", pid, err)
		}
		ticks += n
	}
	hz := ClockTicks()
	return time.Duration(ticks/hz)*time.Second + time.Duration(ticks%hz)*time.Second/time.Duration(hz), nil
}

// ProcRSS returns the resident memory of process pid in bytes, VmRSS from
// /proc/PID/status (Linux only).
func ProcRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest) // "1234", "kB"
		if len(f) != 2 || string(f[1]) != "kB" {
			break
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			break
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("loadgen: /proc/%d/status: no VmRSS line in kB (a kernel thread, or a zombie?)", pid)
}

// ClockTicks returns the kernel's clock tick rate, sysconf(_SC_CLK_TCK),
// the unit of the CPU times in /proc/PID/stat. The C library reads it from
// the AT_CLKTCK entry of the auxiliary vector, and so does this, from
// /proc/self/auxv; it falls back to 100, the value on every common Linux
// platform, if that cannot be read.
func ClockTicks() int64 {
	clockTicksOnce.Do(func() {
		clockTicks = 100
		b, err := os.ReadFile("/proc/self/auxv")
		if err != nil {
			return
		}
		const atClkTck = 17
		// The vector is pairs of words (key, value) of the native size
		// and byte order, ended by the key AT_NULL.
		word, order := strconv.IntSize/8, binary.ByteOrder(binary.NativeEndian)
		for ; len(b) >= 2*word; b = b[2*word:] {
			var key, val uint64
			if word == 8 {
				key, val = order.Uint64(b), order.Uint64(b[8:])
			} else {
				key, val = uint64(order.Uint32(b)), uint64(order.Uint32(b[4:]))
			}
			if key == atClkTck && val > 0 {
				clockTicks = int64(val)
				return
			}
			if key == 0 { // AT_NULL ends the vector
				return
			}
		}
	})
	return clockTicks
}

var (
	clockTicksOnce sync.Once
	clockTicks     int64
)

// procSample is a server's usage at one moment; ok is false if it could not
// be read.
type procSample struct {
	cpu time.Duration
	rss int64
	ok  bool
}

// sampleProc reads pid's CPU time and resident memory, if pid is set.
func sampleProc(pid int) (procSample, error) {
	if pid <= 0 {
		return procSample{}, nil
	}
	cpu, err := ProcCPU(pid)
	if err != nil {
		return procSample{}, err
	}
	rss, err := ProcRSS(pid)
	if err != nil {
		return procSample{}, err
	}
	return procSample{cpu: cpu, rss: rss, ok: true}, nil
}
