// Reference output from client_golang for the native histogram tests.
//
// Built against Debian 12's packaged sources only (no module downloads):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run scripts/native_histograms/main.go fixtures
//
// Modes:
//
//	fixtures   observe fixed observation sets with client_golang's native histograms and
//	           print, per case, the observations and the resulting buckets as JSON
//	           (tests/fixtures/native_histograms_golang.json is this output).
//	roundtrip  read a delimited io.prometheus.client.MetricFamily stream on stdin with
//	           prometheus/common's decoder and write it back with its encoder on stdout.
//	text       read the same stream and print it in the text format (expfmt).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand"
	"os"
	"sort"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// bucket is [index, count].
type bucket [2]int64

type child struct {
	Labels       map[string]string `json:"labels"`
	Set          string            `json:"set"`
	Schema       int32             `json:"schema"`
	ZeroCount    uint64            `json:"zero_count"`
	Count        uint64            `json:"count"`
	Sum          string            `json:"sum"`
	Positive     []bucket          `json:"positive"`
	Negative     []bucket          `json:"negative"`
}

type fixture struct {
	Name          string  `json:"name"`
	Factor        float64 `json:"factor"`
	ZeroThreshold string  `json:"zero_threshold"`
	MaxBuckets    uint32  `json:"max_buckets"`
	Children      []child `json:"children"`
}

func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// populated turns spans and deltas into (index, count) pairs with a count above zero.
func populated(spans []*dto.BucketSpan, deltas []int64) []bucket {
	out := []bucket{}
	var idx int32
	var count int64
	d := 0
	for n, s := range spans {
		if n == 0 {
			idx = s.GetOffset()
		} else {
			idx += s.GetOffset()
		}
		for j := uint32(0); j < s.GetLength(); j++ {
			count += deltas[d]
			d++
			if count > 0 {
				out = append(out, bucket{int64(idx), count})
			}
			idx++
		}
	}
	return out
}

func observationSets() map[string][]float64 {
	sets := map[string][]float64{}
	sets["zeros"] = []float64{0, math.Copysign(0, -1), 1e-40, -1e-40, math.Ldexp(1, -128), -math.Ldexp(1, -128),
		math.Ldexp(1, -127), 5e-324, 0, 1}
	sets["negatives"] = []float64{-1, -2, -0.5, -3.7, -100, -1e-3, -1e-3, 5, -0.1, -0.1, -0.1, -7e5}
	var pow []float64
	for k := -12; k <= 12; k++ {
		pow = append(pow, math.Ldexp(1, k), -math.Ldexp(1, k))
	}
	// Schema 3's inner bucket boundaries, and just above them.
	for j := 0; j < 8; j++ {
		b := math.Pow(2, float64(j)/8)
		pow = append(pow, b, math.Nextafter(b, math.Inf(1)))
	}
	sets["powers_of_two"] = pow
	sets["extremes"] = []float64{1e-300, 1e300, -1e-300, -1e300, math.MaxFloat64, -math.MaxFloat64,
		math.Inf(1), math.Inf(-1), math.NaN(), 4.9e-324, 1, 1e-300, 1e300}
	r := rand.New(rand.NewSource(25))
	var logn []float64
	for i := 0; i < 1000; i++ {
		logn = append(logn, math.Exp(r.NormFloat64()-3))
	}
	sets["lognormal"] = logn
	var wide []float64
	for i := 0; i < 300; i++ {
		v := math.Pow(10, r.Float64()*18-9)
		if i%3 == 0 {
			v = -v
		}
		wide = append(wide, v)
	}
	sets["wide"] = wide
	return sets
}

func fixtures() {
	sets := observationSets()
	names := make([]string, 0, len(sets))
	for name := range sets {
		names = append(names, name)
	}
	sort.Strings(names)
	var out struct {
		Sets  map[string][]string `json:"sets"`
		Cases []fixture           `json:"cases"`
	}
	out.Sets = map[string][]string{}
	for name, set := range sets {
		for _, v := range set {
			out.Sets[name] = append(out.Sets[name], fmtFloat(v))
		}
	}
	type config struct {
		factor float64
		zero   float64
		max    uint32
	}
	configs := []config{
		{1.1, 0, 160}, {1.1, 0, 20}, {1.1, 0, 0}, {1.1, 1e-3, 160},
		// A zero threshold of 0 (client_golang: NativeHistogramZeroThresholdZero), so that
		// 1e-300 and the subnormals get buckets of their own.
		{1.1, prometheus.NativeHistogramZeroThresholdZero, 160},
		{1.1, prometheus.NativeHistogramZeroThresholdZero, 20},
		{4, prometheus.NativeHistogramZeroThresholdZero, 20},
		{1.2, 0, 160}, {2, 0, 160}, {4, 0, 20}, {1.0001, 0, 160}, {65536, 0, 160},
	}
	for _, c := range configs {
		zero := c.zero
		switch zero {
		case 0:
			zero = prometheus.DefNativeHistogramZeroThreshold
		case prometheus.NativeHistogramZeroThresholdZero:
			zero = 0
		}
		// Unlabelled: one set per histogram.
		for _, name := range names {
			h := prometheus.NewHistogram(prometheus.HistogramOpts{
				Name: "h", Help: "h", NativeHistogramBucketFactor: c.factor,
				NativeHistogramZeroThreshold: c.zero, NativeHistogramMaxBucketNumber: c.max,
			})
			for _, v := range sets[name] {
				h.Observe(v)
			}
			f := fixture{Name: name, Factor: c.factor, ZeroThreshold: fmtFloat(zero), MaxBuckets: c.max}
			f.Children = append(f.Children, describe(h, nil, name))
			out.Cases = append(out.Cases, f)
		}
		// Labelled: every set into its own child of one family, interleaved.
		vec := prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hv", Help: "hv", NativeHistogramBucketFactor: c.factor,
			NativeHistogramZeroThreshold: c.zero, NativeHistogramMaxBucketNumber: c.max,
		}, []string{"set"})
		longest := 0
		for _, name := range names {
			if len(sets[name]) > longest {
				longest = len(sets[name])
			}
		}
		for i := 0; i < longest; i++ {
			for _, name := range names {
				if i < len(sets[name]) {
					vec.WithLabelValues(name).Observe(sets[name][i])
				}
			}
		}
		f := fixture{Name: "labelled", Factor: c.factor, ZeroThreshold: fmtFloat(zero), MaxBuckets: c.max}
		for _, name := range names {
			f.Children = append(f.Children, describe(vec.WithLabelValues(name).(prometheus.Metric),
				map[string]string{"set": name}, name))
		}
		out.Cases = append(out.Cases, f)
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		panic(err)
	}
}

func describe(m prometheus.Metric, labels map[string]string, set string) child {
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		panic(err)
	}
	h := pb.GetHistogram()
	c := child{Labels: labels, Set: set, Schema: h.GetSchema(), ZeroCount: h.GetZeroCount(),
		Count: h.GetSampleCount(), Sum: fmtFloat(h.GetSampleSum()),
		Positive: populated(h.GetPositiveSpan(), h.GetPositiveDelta()),
		Negative: populated(h.GetNegativeSpan(), h.GetNegativeDelta())}
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	return c
}

func decodeAll(each func(*dto.MetricFamily)) {
	dec := expfmt.NewDecoder(os.Stdin, expfmt.FmtProtoDelim)
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err == io.EOF {
			return
		} else if err != nil {
			fmt.Fprintln(os.Stderr, "decode:", err)
			os.Exit(1)
		}
		each(&mf)
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: main.go fixtures|roundtrip|text")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "fixtures":
		fixtures()
	case "roundtrip":
		enc := expfmt.NewEncoder(os.Stdout, expfmt.FmtProtoDelim)
		decodeAll(func(mf *dto.MetricFamily) {
			if err := enc.Encode(mf); err != nil {
				panic(err)
			}
		})
	case "text":
		decodeAll(func(mf *dto.MetricFamily) {
			if _, err := expfmt.MetricFamilyToText(os.Stdout, mf); err != nil {
				fmt.Fprintln(os.Stderr, "text:", err)
				os.Exit(1)
			}
		})
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
}
