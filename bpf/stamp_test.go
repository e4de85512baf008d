//go:build linux

package bpf

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/rules"
)

// xdpMD is struct xdp_md, BPF_PROG_RUN's context for XDP: data is the
// length of the metadata in front of the frame.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// rxStampMagic is RX_STAMP_MAGIC (xsk.h), as pipeline reads it.
const rxStampMagic = 0x58445053544d5031

// runMeta runs prog on frame and returns its action and the metadata it
// left in front of the frame (BPF_PROG_RUN returns data_meta to data_end).
func runMeta(t *testing.T, prog *ebpf.Program, frame []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(frame)+64)
	var md xdpMD
	ret, err := prog.Run(&ebpf.RunOptions{Data: frame, DataOut: out,
		Context: xdpMD{DataEnd: uint32(len(frame))}, ContextOut: &md})
	if err != nil {
		t.Fatalf("BPF_PROG_RUN: %v", err)
	}
	return ret, out[:md.Data]
}

func monotonic(t *testing.T) uint64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

// TestRxStampProgRun runs every redirecting program, loaded with and
// without RxStamp, on a frame it redirects and on one it passes: only a
// stamping program's redirected frame carries metadata, 16 bytes, a
// CLOCK_MONOTONIC reading taken while the program ran and its check word.
func TestRxStampProgRun(t *testing.T) {
	testutil.RequireRoot(t)
	type loaded struct {
		prog  *ebpf.Program
		close func() error
		// redirect makes the program redirect (a socket on queue 0), or
		// pass (none).
		redirect func(on bool) error
	}
	fd := unboundXSK(t)
	redirectOn := func(reg func(int, int) error, unreg func(int) error) func(bool) error {
		return func(on bool) error {
			if on {
				return reg(0, fd)
			}
			return unreg(0)
		}
	}
	loaders := map[string]func(stamp uint32) (loaded, error){
		"redirect": func(stamp uint32) (loaded, error) {
			r, err := LoadRedirect(RedirectOptions{RxStamp: stamp})
			if err != nil {
				return loaded{}, err
			}
			return loaded{r.Program(), r.Close, redirectOn(r.Register, r.Unregister)}, nil
		},
		"track": func(stamp uint32) (loaded, error) {
			r, err := LoadTrackingRedirect(RedirectOptions{RxStamp: stamp})
			if err != nil {
				return loaded{}, err
			}
			return loaded{r.Program(), r.Close, redirectOn(r.Register, r.Unregister)}, nil
		},
		"steer": func(stamp uint32) (loaded, error) {
			s, err := LoadSteer(SteerOptions{RxStamp: stamp})
			if err != nil {
				return loaded{}, err
			}
			set := &rules.Set{Default: rules.ActionRedirect, Malformed: rules.ActionRedirect}
			if err := s.Apply(set); err != nil {
				s.Close()
				return loaded{}, err
			}
			return loaded{s.Program(), s.Close, redirectOn(s.Register, s.Unregister)}, nil
		},
	}
	for name, load := range loaders {
		for _, stamp := range []uint32{0, 1, 4} {
			t.Run(fmt.Sprintf("%s/%d", name, stamp), func(t *testing.T) {
				l, err := load(stamp)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					if err := l.close(); err != nil {
						t.Error(err)
					}
				})
				frame := udp4Frame(64)
				if err := l.redirect(true); err != nil {
					t.Fatal(err)
				}
				if stamp > 1 {
					// One frame in stamp, counted per CPU (the test's
					// thread stays on one, and the subtest's goroutine
					// ends with it): the first of these is stamped, the
					// others carry zeros where the stamp goes, so that
					// the worker never reads a stamp left from an earlier
					// use of the buffer.
					pinToCPU(t)
					for i := range 2 * stamp {
						_, meta := runMeta(t, l.prog, frame)
						if len(meta) != 16 {
							t.Fatalf("frame %d of a stamp every %d: %d bytes of metadata, want 16", i, stamp, len(meta))
						}
						if stamped := binary.NativeEndian.Uint64(meta[8:]) != 0; stamped != (i%stamp == 0) {
							t.Fatalf("frame %d of a stamp every %d: metadata % x", i, stamp, meta)
						}
					}
				}
				before := monotonic(t)
				act, meta := runMeta(t, l.prog, frame)
				after := monotonic(t)
				if act != xdpRedirect {
					t.Fatalf("action %d, want XDP_REDIRECT", act)
				}
				if stamp == 0 {
					if len(meta) != 0 {
						t.Fatalf("loaded without RxStamp: %d bytes of metadata % x", len(meta), meta)
					}
				} else {
					if len(meta) != 16 {
						t.Fatalf("redirected frame: %d bytes of metadata, want 16 (the stamp)", len(meta))
					}
					ns, check := binary.NativeEndian.Uint64(meta), binary.NativeEndian.Uint64(meta[8:])
					if ns < before || ns > after {
						t.Errorf("stamp %d not within the run's clock readings %d..%d", ns, before, after)
					}
					if check != ns^rxStampMagic {
						t.Errorf("check word %#x, want %#x", check, ns^rxStampMagic)
					}
				}
				if err := l.redirect(false); err != nil {
					t.Fatal(err)
				}
				if act, meta := runMeta(t, l.prog, frame); act != xdpPass || len(meta) != 0 {
					t.Fatalf("no socket: action %d with %d bytes of metadata, want XDP_PASS without any", act, len(meta))
				}
			})
		}
	}
}

// BenchmarkRxStamp measures what the rx stamp costs the redirect program
// per frame: each program, with and without RxStamp, runs one frame per
// BPF_PROG_RUN (a repeated frame would keep the metadata of the run
// before, and bpf_xdp_adjust_meta refuses to grow it past 32 bytes), the
// two alternating, and the kernel's time of each run is kept. It reports
// the mean of the middle 80% of each's times, as the kernel's clock ticks
// in steps of about 10 ns here (ns/frame-off, ns/frame-on; each includes
// the clock reads that time the run), and their difference, the stamp's
// cost (ns-stamp).
//
//	go test ./bpf/ -run '^$' -bench RxStamp -benchtime 1x
func BenchmarkRxStamp(b *testing.B) {
	pinToCPU(b)
	fd := unboundXSK(b)
	var progs [2]*ebpf.Program
	for i, stamp := range []uint32{0, 1} {
		r, err := LoadRedirect(RedirectOptions{RxStamp: stamp})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { r.Close() })
		if err := r.Register(0, fd); err != nil {
			b.Fatal(err)
		}
		progs[i] = r.Program()
	}
	frame := udp4Frame(64)
	const runs = 100000
	for b.Loop() {
		var times [2][]time.Duration
		for range runs {
			for i, p := range progs {
				ret, d, err := p.Benchmark(frame, 1, nil)
				if err != nil || ret != xdpRedirect {
					b.Fatalf("run: action %d, %v", ret, err)
				}
				times[i] = append(times[i], d)
			}
		}
		var mean [2]float64
		for i := range times {
			slices.Sort(times[i])
			mid := times[i][runs/10 : runs-runs/10]
			for _, d := range mid {
				mean[i] += float64(d.Nanoseconds())
			}
			mean[i] /= float64(len(mid))
		}
		b.ReportMetric(mean[0], "ns/frame-off")
		b.ReportMetric(mean[1], "ns/frame-on")
		b.ReportMetric(mean[1]-mean[0], "ns-stamp")
	}
}

// TestRxMetadataBound: the redirect and steering programs load bound to a
// veth end for its RX metadata (the verifier takes the kfunc calls) and
// attach to it in driver mode, auto choosing it; they refuse generic mode
// and another interface, each with an error that says why. The tracking
// program does not take the binding.
func TestRxMetadataBound(t *testing.T) {
	testutil.RequireRoot(t)
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	ifindex := p.B.Ifindex(t)
	type bound interface {
		Attach(int, AttachMode) (AttachMode, error)
		Close() error
	}
	loaders := map[string]func() (bound, error){
		"redirect": func() (bound, error) {
			return LoadRedirect(RedirectOptions{RxStamp: 1, RxMetadataIfindex: ifindex})
		},
		"steer": func() (bound, error) { return LoadSteer(SteerOptions{RxMetadataIfindex: ifindex}) },
	}
	for name, load := range loaders {
		t.Run(name, func(t *testing.T) {
			p.B.NS.MustDo(t, func() error {
				prog, err := load()
				if err != nil {
					return err
				}
				defer prog.Close()
				if _, err := prog.Attach(ifindex, AttachGeneric); err == nil || !strings.Contains(err.Error(), "driver mode only") {
					t.Errorf("generic attach of a bound program: %v", err)
				}
				if _, err := prog.Attach(1, AttachDriver); err == nil || !strings.Contains(err.Error(), "bound to interface index") {
					t.Errorf("attach of a bound program to another interface: %v", err)
				}
				mode, err := prog.Attach(ifindex, AttachAuto)
				if err != nil || mode != AttachDriver {
					t.Errorf("attach auto: %v, %v; want driver mode", mode, err)
				}
				return nil
			})
		})
	}
	if r, err := LoadTrackingRedirect(RedirectOptions{RxMetadataIfindex: ifindex}); err == nil {
		r.Close()
		t.Error("the tracking program loaded bound for RX metadata")
	}
}
