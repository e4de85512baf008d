package pipeline

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

// captureFrames runs n frames of the given size through p.
func captureFrames(t *testing.T, p *Pcap, n, size int) {
	t.Helper()
	f := buildFrame(t, frameSpec{dport: 53, payload: size - 42})
	for n > 0 {
		k := min(n, 50)
		frames := make([][]byte, k)
		for i := range frames {
			frames[i] = f
		}
		b, _ := burstOf(t, frames...)
		p.Process(b)
		n -= k
	}
}

// TestCaptureNeverTruncatesALiveFile: a second capture on the path a live
// capture is writing (a reload, or a second instance) neither truncates nor
// interleaves with it: it writes a file of its own.
func TestCaptureNeverTruncatesALiveFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cap.pcap")
	p1, err := NewPcap(PcapOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p1.Close() })
	captureFrames(t, p1, 1000, 200)
	p2, err := NewPcap(PcapOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p2.Close() })
	captureFrames(t, p2, 10, 64)
	if err := p1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p2.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(readPcap(t, path)); got != 1000 {
		t.Fatalf("%s holds %d records, want the first capture's 1000", path, got)
	}
	files := p2.Files()
	if len(files) != 1 || files[0] == path {
		t.Fatalf("second capture wrote %v, want one file of its own", files)
	}
	if got := len(readPcap(t, files[0])); got != 10 {
		t.Fatalf("%s holds %d records, want 10", files[0], got)
	}
}

// TestReloadContinuesCapture: swapping a worker's chain for one with the
// same pcap stage (what SIGHUP does) continues the file: every frame before
// and after the reload is in it, in one valid capture.
func TestReloadContinuesCapture(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cap.pcap")
	opts := PcapOptions{Path: path, SnapLen: 128}
	p1, err := NewPcap(opts)
	if err != nil {
		t.Fatal(err)
	}
	mem := newUmem(t, 512, 2048, 128)
	port, _ := newPort(t, mem, wireOf(buildFrame(t, frameSpec{dport: 53, payload: 158}), -1), 128, 128)
	w, err := NewWorker(WorkerConfig{Ports: []NamedPort{{"a", port}}, Mem: mem, Stages: []Stage{p1}})
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	testutil.Eventually(t, 10*time.Second, func() bool { return p1.Packets.Load() > 0 }, "no traffic")
	p2, err := NewPcap(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p2.Close() })
	old, err := w.SetStages(context.Background(), []Stage{p2})
	if err != nil {
		t.Fatal(err)
	}
	if err := CloseStages(old); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return p2.Packets.Load() > 1000 }, "no traffic after the reload")
	stop()
	if err := p2.Close(); err != nil {
		t.Fatal(err)
	}
	received := w.PortStats(0).RxPackets.Load()
	if got := uint64(len(readPcap(t, path))); got != received || p1.Packets.Load()+p2.Packets.Load() != received {
		t.Fatalf("%s holds %d records, captured %d+%d, want %d", path, got, p1.Packets.Load(), p2.Packets.Load(), received)
	}
	if files := p2.Files(); len(files) != 1 || files[0] != path {
		t.Fatalf("files %v, want the one file continued", files)
	}
}

// TestCaptureFilesArePrivate: captured traffic is readable by root only,
// unless Mode says otherwise, also when the file was there before.
func TestCaptureFilesArePrivate(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "old.pcap")
	if err := os.WriteFile(old, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
		want os.FileMode
	}{
		{filepath.Join(dir, "new.pcap"), 0, 0o600},
		{old, 0, 0o600},
		{filepath.Join(dir, "group.pcap"), 0o640, 0o640},
	} {
		p, err := NewPcap(PcapOptions{Path: c.path, Mode: c.mode, MaxBytes: 100})
		if err != nil {
			t.Fatal(err)
		}
		captureFrames(t, p, 3, 100) // rotates: the next files too
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		for _, name := range p.Files() {
			st, err := os.Stat(name)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != c.want {
				t.Errorf("%s: mode %v, want %v", name, st.Mode().Perm(), c.want)
			}
		}
	}
}

// TestRotationKeepsAtMostMaxFiles: like tcpdump -W, the oldest file goes
// when a rotation would make more than MaxFiles.
func TestRotationKeepsAtMostMaxFiles(t *testing.T) {
	dir := t.TempDir()
	p, err := NewPcap(PcapOptions{Path: filepath.Join(dir, "cap.pcap"), MaxBytes: 300, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	captureFrames(t, p, 40, 100)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := p.Files()
	if len(ents) != 3 || len(files) != 3 {
		t.Fatalf("%d files on disk, %d listed (%v), want 3", len(ents), len(files), files)
	}
	if filepath.Base(files[2]) != "cap.13.pcap" {
		t.Errorf("newest file %s, want cap.13.pcap", files[2])
	}
	if _, err := NewPcap(PcapOptions{Path: filepath.Join(dir, "x.pcap"), MaxFiles: -1}); err == nil {
		t.Error("negative MaxFiles accepted")
	}
}

// fileSizes maps each file in dir to its size.
func fileSizes(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, e := range ents {
		st, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = st.Size()
	}
	return out
}

// reloadCapture is what a reload does to a capture stage: a new one with
// opts continues old (Worker.SetStages), then old is closed.
func reloadCapture(t *testing.T, old *Pcap, opts PcapOptions) *Pcap {
	t.Helper()
	p, err := NewPcap(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	p.Continue(old)
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReloadAfterRotationNeverShrinksACapture: a reload after the capture
// rotated past its first name (which it no longer holds) truncates no file
// and adds none: with the same options the new stage continues the
// capture, with other options it writes new names only. Only rotation
// removes files, keeping MaxFiles.
func TestReloadAfterRotationNeverShrinksACapture(t *testing.T) {
	dir := t.TempDir()
	opts := PcapOptions{Path: filepath.Join(dir, "cap.pcap"), MaxBytes: 1000, MaxFiles: 5}
	p1, err := NewPcap(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p1.Close() })
	captureFrames(t, p1, 30, 100) // 116 bytes a record: a file every 9
	if err := p1.Flush(); err != nil {
		t.Fatal(err)
	}
	before := fileSizes(t, dir)
	if before["cap.pcap"] != 1068 || len(before) != 4 {
		t.Fatalf("files %v: want four, cap.pcap full, after rotating past it, or the test tests nothing", before)
	}
	noneShrank := func(what string, before map[string]int64, most int) {
		t.Helper()
		after := fileSizes(t, dir)
		for name, size := range before {
			if got, ok := after[name]; ok && got < size {
				t.Errorf("%s: %s shrank from %d to %d bytes", what, name, size, got)
			}
		}
		if len(after) > most {
			t.Errorf("%s: files %v, want at most %d", what, after, most)
		}
	}
	// The same options: the reload's stage continues the capture.
	p2 := reloadCapture(t, p1, opts)
	noneShrank("reload", before, 5)
	captureFrames(t, p2, 30, 100)
	if err := p2.Flush(); err != nil {
		t.Fatal(err)
	}
	noneShrank("frames after the reload", before, 5)
	if files := p2.Files(); len(files) != 5 || filepath.Base(files[4]) != "cap.6.pcap" {
		t.Errorf("the continued capture keeps %v, want 5 files up to cap.6.pcap", files)
	}

	// Other options: a capture of its own, on names the last one never had.
	before = fileSizes(t, dir)
	o3 := opts
	o3.SnapLen = 64
	p3 := reloadCapture(t, p2, o3)
	captureFrames(t, p3, 5, 100)
	if err := p3.Close(); err != nil {
		t.Fatal(err)
	}
	noneShrank("a reload with other options", before, 6)
	files := p3.Files()
	if len(files) != 1 || before[filepath.Base(files[0])] != 0 {
		t.Errorf("the new capture wrote %v, want one file on a new name (the last capture's: %v)", files, before)
	}
}

// TestCaptureWritesRegularFilesOnly: a FIFO (whose open would block without
// a reader), a device or a path on procfs is refused up front; a FIFO put
// in the capture's way later fails its open at once, counted, instead of
// blocking the worker.
func TestCaptureWritesRegularFilesOnly(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.pcap")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		fifo:               "is not a regular file (a FIFO)",
		"/dev/full":        "is not a regular file (a device)",
		"/proc/cap.pcap":   "is on procfs",
		"/proc/sys/fs/x.p": "is on procfs",
		dir:                "is not a regular file (a directory)",
	} {
		if _, err := NewPcap(PcapOptions{Path: path}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", path, err, want)
		}
	}
	var logs bytes.Buffer
	late := filepath.Join(dir, "late.pcap")
	p, err := NewPcap(PcapOptions{Path: late, Logger: newTestLogger(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := unix.Mkfifo(late, 0o600); err != nil {
		t.Fatal(err)
	}
	captureFrames(t, p, 3, 100) // would block in open(2) without O_NONBLOCK
	if p.Errors.Load() == 0 || p.Lost.Load() != 3 || !strings.Contains(logs.String(), "not a regular file") {
		t.Fatalf("capture into a FIFO: errors %d, lost %d, logs %q", p.Errors.Load(), p.Lost.Load(), logs.String())
	}
}
