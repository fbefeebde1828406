// Command clientloop is the yardstick for the load generator itself: the
// simplest Go ping-pong client there is. Each connection has a goroutine
// that writes a message and reads its echo with io.ReadFull, in a loop,
// with no check of the data, no histogram and no deadlines. It reports
// messages per second and its own CPU time per message (getrusage), to be
// compared with loadgen's Result.LoadCPUPerMsg on the same server.
//
//	clientloop -addr 127.0.0.1:8124 -conns 50 -size 64 -duration 3s
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tcpkit/tcpkit"
)

// A Result is what one run measured; -json writes it.
type Result struct {
	Addr       string  `json:"addr"`
	Conns      int     `json:"conns"`
	Size       int     `json:"size"`
	ElapsedNs  int64   `json:"elapsed_ns"`
	Messages   int64   `json:"messages"`
	MsgsPerSec float64 `json:"msgs_per_sec"`
	CPUNs      int64   `json:"cpu_ns"`
	CPUPerMsg  float64 `json:"cpu_per_msg_ns"`
}

// Phases of the run; each goroutine counts only messages echoed while
// measuring.
const (
	warmup int32 = iota
	measuring
	stopped
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8124", "echo server address, in tcpkit's grammar")
	conns := flag.Int("conns", 1, "connections, one goroutine each")
	size := flag.Int("size", 64, "message size in bytes")
	duration := flag.Duration("duration", 3*time.Second, "measured window")
	warm := flag.Duration("warmup", 500*time.Millisecond, "unmeasured warmup")
	jsonOut := flag.String("json", "", "write the result as JSON to this file")
	flag.Parse()
	network, address, err := tcpkit.ParseAddr(*addr)
	if err != nil {
		log.Fatal(err)
	}

	var phase atomic.Int32
	counts := make([]int64, *conns)
	var wg sync.WaitGroup
	for i := range *conns {
		c, err := net.Dial(network, address)
		if err != nil {
			log.Fatal(err)
		}
		wg.Go(func() {
			defer c.Close()
			msg, back := make([]byte, *size), make([]byte, *size)
			var n int64
			for {
				ph := phase.Load()
				if ph == stopped {
					break
				}
				if _, err := c.Write(msg); err != nil {
					log.Fatal(err)
				}
				if _, err := io.ReadFull(c, back); err != nil {
					log.Fatal(err)
				}
				if ph == measuring {
					n++
				}
			}
			counts[i] = n
		})
	}
	time.Sleep(*warm)
	cpu0, t0 := cpuTime(), time.Now()
	phase.Store(measuring)
	time.Sleep(*duration)
	phase.Store(stopped)
	elapsed, cpu := time.Since(t0), cpuTime()-cpu0
	wg.Wait()

	res := Result{Addr: *addr, Conns: *conns, Size: *size, ElapsedNs: int64(elapsed), CPUNs: int64(cpu)}
	for _, n := range counts {
		res.Messages += n
	}
	res.MsgsPerSec = float64(res.Messages) / elapsed.Seconds()
	if res.Messages > 0 {
		res.CPUPerMsg = float64(cpu) / float64(res.Messages)
	}
	fmt.Printf("%s: %d conns × %d B: %d msgs in %.2fs, %.0f msgs/s; CPU %.2fs, %.0f ns per msg\n",
		*addr, *conns, *size, res.Messages, elapsed.Seconds(), res.MsgsPerSec, cpu.Seconds(), res.CPUPerMsg)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

// cpuTime returns this process's CPU time, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
