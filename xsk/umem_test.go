package xsk

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func newTestUmem(t testing.TB, opts UmemOptions) *Umem {
	t.Helper()
	u, err := NewUmem(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := u.Close(); err != nil {
			t.Errorf("umem close: %v", err)
		}
	})
	return u
}

func TestOptionValidation(t *testing.T) {
	for _, c := range []struct {
		name string
		opts UmemOptions
		want string
	}{
		{"frame size", UmemOptions{FrameSize: 3000}, "frame size 3000: must be 2048 or 4096"},
		{"frame size 8192", UmemOptions{FrameSize: 8192}, "must be 2048 or 4096"},
		{"too many frames", UmemOptions{NumFrames: 1<<24 + 1}, "frames: at most"},
		{"headroom", UmemOptions{FrameSize: 2048, Headroom: 1800}, "headroom 1800 leaves no room"},
		{"fill ring", UmemOptions{FillSize: 1000}, "fill ring size 1000: must be a power of two"},
		{"completion ring", UmemOptions{CompletionSize: 3}, "completion ring size 3: must be a power of two"},
	} {
		t.Run(c.name, func(t *testing.T) {
			u, err := NewUmem(c.opts)
			if err == nil {
				u.Close()
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %q, want ErrInvalidOption containing %q", err, c.want)
			}
		})
	}

	u := newTestUmem(t, UmemOptions{NumFrames: 64})
	for _, c := range []struct {
		name    string
		ifindex int
		queue   int
		opts    SocketOptions
		want    string
	}{
		{"rx ring", 1, 0, SocketOptions{RXSize: 1000}, "rx ring size 1000: must be a power of two"},
		{"tx ring", 1, 0, SocketOptions{TXSize: 100}, "tx ring size 100: must be a power of two"},
		{"bind mode", 1, 0, SocketOptions{Bind: 7}, "unknown bind mode 7"},
		{"busy poll budget", 1, 0, SocketOptions{BusyPoll: true, BusyPollBudget: -1}, "busy poll budget"},
		{"ifindex", 0, 0, SocketOptions{}, "ifindex 0"},
		{"queue", 1, -1, SocketOptions{}, "queue -1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Validation comes before any syscall, so this holds with or
			// without privileges and on any interface.
			s, err := NewSocket(u, c.ifindex, c.queue, c.opts)
			if err == nil {
				s.Close()
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %q, want ErrInvalidOption containing %q", err, c.want)
			}
		})
	}
}

func TestUmemDefaults(t *testing.T) {
	u := newTestUmem(t, UmemOptions{})
	if u.NumFrames() != 4096 || u.FrameSize() != 4096 || len(u.Region()) != 4096*4096 {
		t.Fatalf("defaults: %d frames of %d, region %d", u.NumFrames(), u.FrameSize(), len(u.Region()))
	}
	if o := u.Options(); o.FillSize != 2048 || o.CompletionSize != 2048 {
		t.Fatalf("default ring sizes: %+v", o)
	}
}

// TestUmemHugePagesFallback: a UMEM asked for huge pages when they cannot
// be had (one more than are free) falls back to normal pages: NewUmem
// succeeds, HugePages says false, and the mapping is the size asked, of
// normal pages, usable to its last byte.
func TestUmemHugePagesFallback(t *testing.T) {
	if over := procInt(t, "/proc/sys/vm/nr_overcommit_hugepages", ""); over > 0 {
		t.Skipf("vm.nr_overcommit_hugepages %d: huge pages are made on demand, so none can be out of reach", over)
	}
	free := procInt(t, "/proc/meminfo", "HugePages_Free:") - procInt(t, "/proc/meminfo", "HugePages_Rsvd:")
	size := procInt(t, "/proc/meminfo", "Hugepagesize:") << 10 // kB
	if (free+1)*size > 64<<20 {
		t.Skipf("%d huge pages of %d KiB free: asking one more would map over 64 MiB", free, size>>10)
	}
	frames := (free + 1) * size / 2048
	u := newTestUmem(t, UmemOptions{NumFrames: uint32(frames), FrameSize: 2048, HugePages: true})
	if u.HugePages() {
		t.Fatalf("HugePages true, with %d huge pages free and %d asked", free, free+1)
	}
	if len(u.Region()) != frames*2048 {
		t.Fatalf("region of %d bytes, want %d", len(u.Region()), frames*2048)
	}
	if ps := mappedPageSize(t, u.Region()); ps != os.Getpagesize() {
		t.Fatalf("the region is mapped with %d-byte pages, want normal ones (%d)", ps, os.Getpagesize())
	}
	u.Region()[len(u.Region())-1] = 1
}

// procInt reads a number from a /proc file: the whole file, or (key not
// empty) the number after key on the line that starts with it.
func procInt(t *testing.T, file, key string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.TrimSpace(string(b))
	if key != "" {
		for _, line := range strings.Split(text, "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == key {
				text = f[1]
			}
		}
	}
	n, err := strconv.Atoi(text)
	if err != nil {
		t.Fatalf("%s %s: %v", file, key, err)
	}
	return n
}

// mappedPageSize returns the size of the pages that back mem, from the
// KernelPageSize of its mapping in /proc/self/smaps.
func mappedPageSize(t *testing.T, mem []byte) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	addr := baseAddr(mem)
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if start, end, ok := strings.Cut(f[0], "-"); ok && !strings.HasSuffix(f[0], ":") {
			lo, err1 := strconv.ParseUint(start, 16, 64)
			hi, err2 := strconv.ParseUint(end, 16, 64)
			in = err1 == nil && err2 == nil && lo <= addr && addr < hi
			continue
		}
		if in && f[0] == "KernelPageSize:" && len(f) == 3 && f[2] == "kB" {
			kb, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no mapping of %#x with a KernelPageSize in /proc/self/smaps", addr)
	return 0
}

func TestUmemAllocFree(t *testing.T) {
	u := newTestUmem(t, UmemOptions{NumFrames: 256, FrameSize: 2048, Debug: true})
	addrs := make([]uint64, 300)
	if n := u.Alloc(addrs); n != 256 {
		t.Fatalf("alloc all: %d", n)
	}
	seen := map[uint64]bool{}
	for _, a := range addrs[:256] {
		if a%2048 != 0 || a >= 256*2048 || seen[a] {
			t.Fatalf("bad or duplicate frame address %#x", a)
		}
		seen[a] = true
		if f := u.Frame(a + 100); len(f) != 2048 || &f[0] != &u.Region()[a] {
			t.Fatalf("Frame(%#x+100) is not the frame", a)
		}
	}
	if n := u.Alloc(addrs[:1]); n != 0 {
		t.Fatalf("alloc from empty stack: %d", n)
	}
	if a := u.Accounting(); a.App != 256 || a.Free != 0 {
		t.Fatalf("after alloc all: %+v", a)
	}
	// Any address inside a frame frees the frame.
	addrs[0] += 300
	u.Free(addrs[:256])
	if a := u.Accounting(); a.App != 0 || a.Free != 256 || a.Check() != nil {
		t.Fatalf("after free all: %+v (%v)", a, a.Check())
	}
	if b := u.Bytes(Desc{Addr: 4096 + 10, Len: 20}); len(b) != 20 || &b[0] != &u.Region()[4106] {
		t.Fatal("Bytes does not alias the umem")
	}
}

func TestUmemDebugDoubleFree(t *testing.T) {
	u := newTestUmem(t, UmemOptions{NumFrames: 8, FrameSize: 2048, Debug: true})
	var a [1]uint64
	u.Alloc(a[:])
	u.Free(a[:])
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(r.(string), "double free") {
			t.Fatalf("double free: recover() = %v", r)
		}
	}()
	u.Free(a[:])
}

// TestUmemConcurrentAllocFree runs batches of Alloc and Free from several
// goroutines; every frame must come back exactly once (Debug panics on a
// double free).
func TestUmemConcurrentAllocFree(t *testing.T) {
	u := newTestUmem(t, UmemOptions{NumFrames: 1024, FrameSize: 2048, Debug: true})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]uint64, 16+g*7)
			for range 2000 {
				n := u.Alloc(buf)
				u.Free(buf[:n])
			}
		}()
	}
	wg.Wait()
	if a := u.Accounting(); a.Free != 1024 || a.Check() != nil {
		t.Fatalf("after concurrent alloc/free: %+v (%v)", a, a.Check())
	}
}

func TestAccountingCheck(t *testing.T) {
	good := Accounting{Total: 10, Free: 4, App: 1, Fill: 2, RX: 1, TX: 1, Completion: 1}
	if err := good.Check(); err != nil {
		t.Fatal(err)
	}
	bad := good
	bad.App = -1
	bad.Free = 6
	if err := bad.Check(); err == nil || !strings.Contains(err.Error(), "app") {
		t.Fatalf("negative app: %v", err)
	}
	bad = good
	bad.Free = 5
	if err := bad.Check(); err == nil || !strings.Contains(err.Error(), "add up to 11") {
		t.Fatalf("sum 11 of 10: %v", err)
	}
}

func TestParseBindMode(t *testing.T) {
	for _, m := range []BindMode{BindAuto, BindCopy, BindZeroCopy} {
		if got, err := ParseBindMode(m.String()); err != nil || got != m {
			t.Errorf("ParseBindMode(%q) = %v, %v; want %v", m.String(), got, err, m)
		}
	}
	if _, err := ParseBindMode("fast"); err == nil {
		t.Error("ParseBindMode(\"fast\") accepted")
	}
}

// TestFrameData: what fits in one frame is the frame less the kernel's 256
// bytes of XDP_PACKET_HEADROOM.
func TestFrameData(t *testing.T) {
	for size, want := range map[uint32]int{0: 3840, 4096: 3840, 2048: 1792} {
		if got := FrameData(size); got != want {
			t.Errorf("FrameData(%d) = %d, want %d", size, got, want)
		}
	}
}

// TestCheckRingSize: powers of two from 1 to 2^31 pass; anything else is
// ErrInvalidOption, also a size that a uint32 conversion would cut down
// to a power of two.
func TestCheckRingSize(t *testing.T) {
	for _, n := range []uint64{1, 2, 64, 2048, 1 << 31} {
		if err := CheckRingSize(n); err != nil {
			t.Errorf("CheckRingSize(%d): %v", n, err)
		}
	}
	for _, n := range []uint64{0, 3, 1000, 1 << 32, 1<<32 + 64} {
		if err := CheckRingSize(n); !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), "must be a power of two") {
			t.Errorf("CheckRingSize(%d) = %v, want a power-of-two refusal", n, err)
		}
	}
}
