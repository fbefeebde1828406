package loadgen

import (
	"math"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// A Second is one second of the measured window: what completed in it.
type Second struct {
	// T is the second's start, from the start of the measured window.
	T time.Duration `json:"t_ns"`
	// Messages completed in the second, and their rate: the last second
	// of a window is usually partial, and its rate counts that.
	Messages   int64   `json:"messages"`
	MsgsPerSec float64 `json:"msgs_per_sec"`
	// The latencies of those messages (zero in Stream mode, or when none
	// completed), with one significant digit: enough for a chart.
	P50 time.Duration `json:"p50_ns,omitempty"`
	P99 time.Duration `json:"p99_ns,omitempty"`
	Max time.Duration `json:"max_ns,omitempty"`
}

// A Quantile is one point of the latency spectrum: the latency that
// Percentile percent of the messages did not exceed.
type Quantile struct {
	Percentile float64       `json:"percentile"`
	Latency    time.Duration `json:"latency_ns"`
}

// spectrumPercentiles are the points of Result.Spectrum: evenly spaced on
// the HdrHistogram axis 1/(1-p), five to a decade, up to 99.999%, then
// 100%.
var spectrumPercentiles = func() []float64 {
	var ps []float64
	for k := 0; k <= 25; k++ {
		ps = append(ps, 100*(1-math.Pow(10, -float64(k)/5)))
	}
	return append(ps, 100)
}()

// spectrum returns the latency spectrum of h.
func spectrum(h *hdrhistogram.Histogram) []Quantile {
	if h.TotalCount() == 0 {
		return nil
	}
	qs := make([]Quantile, 0, len(spectrumPercentiles))
	for _, p := range spectrumPercentiles {
		v := h.ValueAtQuantile(p)
		if p == 100 {
			v = h.Max()
		}
		qs = append(qs, Quantile{Percentile: math.Round(p*1e4) / 1e4, Latency: time.Duration(v)})
	}
	return qs
}

// The per-second series costs each worker one small histogram (one
// significant digit, 1µs to a minute: about 3 KiB) that it flushes into
// the shared one for its second when a message lands in the next second:
// a lock taken once per second per worker, none per message. Seconds more
// than seriesLag behind the clock are summarised and their histograms
// dropped, so a long run keeps a few of them only. A worker that held
// data that long without completing a message (possible only with a
// Timeout above seriesLag) adds its count to the second, not its
// latencies.
const seriesLag = 10

// seriesSliver is the shortest last second a series keeps on its own.
const seriesSliver = 100 * time.Millisecond

// newSecondHistogram returns a histogram for one second's latencies.
func newSecondHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(int64(time.Microsecond), maxLatency, 1)
}

// series collects the per-second figures of a run.
type series struct {
	mu    sync.Mutex
	secs  []Second
	hists []*hdrhistogram.Histogram // nil once summarised
	done  int                       // secs[:done] are summarised
}

// at returns slot i, growing the series as needed. s.mu is held.
func (s *series) at(i int) int {
	for len(s.secs) <= i {
		s.secs = append(s.secs, Second{T: time.Duration(len(s.secs)) * time.Second})
		s.hists = append(s.hists, nil)
	}
	return i
}

// add adds one worker's second: n messages, and their latencies in h (nil
// in Stream mode).
func (s *series) add(sec int64, n int64, h *hdrhistogram.Histogram) {
	if sec < 0 || n == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.at(int(sec))
	s.secs[i].Messages += n
	if h == nil || i < s.done {
		return
	}
	if s.hists[i] == nil {
		s.hists[i] = newSecondHistogram()
	}
	s.hists[i].Merge(h)
}

// summarise fills in the latencies of the seconds before second upTo and
// drops their histograms.
func (s *series) summarise(upTo int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ; s.done < min(upTo, len(s.secs)); s.done++ {
		if h := s.hists[s.done]; h != nil {
			sec := &s.secs[s.done]
			sec.P50 = time.Duration(h.ValueAtQuantile(50))
			sec.P99 = time.Duration(h.ValueAtQuantile(99))
			sec.Max = time.Duration(h.Max())
			s.hists[s.done] = nil
		}
	}
}

// result summarises every second and returns the series of a window of
// length elapsed, with each second's rate. The last second may be partial,
// and its rate is over its length; if under seriesSliver, it is folded
// into the one before, whose rate is then over a little more than a
// second (its p99 is then the larger of the two: an upper bound).
func (s *series) result(elapsed time.Duration) []Second {
	s.summarise(math.MaxInt)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := int((elapsed + time.Second - 1) / time.Second)
	for len(s.secs) < n {
		s.at(len(s.secs))
	}
	out := append([]Second(nil), s.secs...)
	// A sliver of a last second, as a window of 1.0001s has, would give
	// a rate from too short a time: it is folded into the second before.
	if k := len(out) - 1; k > 0 && elapsed-out[k].T < seriesSliver {
		last := out[k]
		out = out[:k]
		out[k-1].Messages += last.Messages
		out[k-1].P99 = max(out[k-1].P99, last.P99)
		out[k-1].Max = max(out[k-1].Max, last.Max)
	}
	for i := range out {
		length := min(time.Second, elapsed-out[i].T)
		if i == len(out)-1 {
			length = elapsed - out[i].T
		}
		if length > 0 {
			out[i].MsgsPerSec = float64(out[i].Messages) / length.Seconds()
		}
	}
	return out
}

// secondOf returns the second of the measured window that now (runner
// time) falls in.
func (r *runner) secondOf(now int64) int64 {
	return (now - r.measureStart.Load()) / int64(time.Second)
}

// tally counts k messages completed at now in the worker's current second,
// flushing the second before if now is past it. ph is the phase they
// completed in; only the measured window is counted.
func (w *worker) tally(now int64, k int, ph int32) {
	if ph != phaseMeasure || k == 0 {
		return
	}
	if sec := w.r.secondOf(now); sec != w.sec {
		w.flushSecond()
		w.sec = sec
	}
	w.secN += int64(k)
}

// observe records the latency lat of a message completed at now in the
// measured window, in the worker's histogram and its second's; tally
// counts it.
func (w *worker) observe(now, lat int64) {
	lat = min(max(lat, 0), maxLatency)
	w.hist.RecordValue(lat)
	w.observeSecond(now, lat)
}

// observeSecond records lat, a latency in range, in the worker's second.
func (w *worker) observeSecond(now, lat int64) {
	if sec := w.r.secondOf(now); sec != w.sec {
		w.flushSecond()
		w.sec = sec
	}
	if w.secHist == nil {
		w.secHist = newSecondHistogram()
	}
	w.secHist.RecordValue(max(lat, int64(time.Microsecond)))
}

// flushSecond hands the worker's current second over to the series.
func (w *worker) flushSecond() {
	if w.secN == 0 && (w.secHist == nil || w.secHist.TotalCount() == 0) {
		return
	}
	var h *hdrhistogram.Histogram
	if w.secHist != nil && w.secHist.TotalCount() > 0 {
		h = w.secHist
	}
	w.r.series.add(w.sec, w.secN, h)
	w.secN = 0
	if w.secHist != nil {
		w.secHist.Reset()
	}
}
