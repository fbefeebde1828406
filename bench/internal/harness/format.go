package harness

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Percentile returns the q-th quantile (0 ≤ q ≤ 1) of sorted, by the
// nearest-rank method, or 0 for no samples.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Median returns the median of xs (the mean of the middle two for an even
// count), or NaN for none. xs is not changed.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// Dur formats d for a table: 3 significant figures, in µs below a
// millisecond, ms below a second, s above.
func Dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return sig3(float64(d)/1e3) + "µs"
	case d < time.Second:
		return sig3(float64(d)/1e6) + "ms"
	}
	return sig3(d.Seconds()) + "s"
}

func sig3(x float64) string {
	switch {
	case x >= 100:
		return strconv.FormatFloat(x, 'f', 0, 64)
	case x >= 10:
		return strconv.FormatFloat(x, 'f', 1, 64)
	}
	return strconv.FormatFloat(x, 'f', 2, 64)
}

// Num formats x rounded to an integer, with thousands separators.
func Num(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "–"
	}
	s := strconv.FormatInt(int64(math.Round(x)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Bytes formats n bytes in B, KiB, MiB or GiB, 3 significant figures.
func Bytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	neg := n < 0
	n = math.Abs(n)
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	s := sig3(n)
	if i == 0 {
		s = strconv.FormatFloat(n, 'f', 0, 64)
	}
	if neg {
		s = "-" + s
	}
	return s + " " + units[i]
}

// Pct formats a fraction as a percentage with one decimal below 10%.
func Pct(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "–"
	}
	if f < 0.1 {
		return fmt.Sprintf("%.1f%%", f*100)
	}
	return fmt.Sprintf("%.0f%%", f*100)
}

// ShortErr returns err's message with its addresses and numbers of the
// form host:port or a.b.c.d replaced by ADDR, at most 120 bytes, so that
// errors of one kind count together.
func ShortErr(err error) string {
	if err == nil {
		return "nil"
	}
	var w []string
	for _, f := range strings.Fields(err.Error()) {
		if strings.ContainsAny(f, ".:") && strings.ContainsAny(f, "0123456789") {
			f = "ADDR"
		}
		w = append(w, f)
	}
	s := strings.Join(w, " ")
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}
