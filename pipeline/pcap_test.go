package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

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
	mem := newFakeMem(512, 2048)
	port := newFakePort(mem, buildFrame(t, frameSpec{dport: 53, payload: 158}), -1, 128, 128)
	w, err := NewWorker(WorkerConfig{Ports: []NamedPort{{"a", port}}, Mem: mem, Stages: []Stage{p1}, CPU: -1})
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
	received := uint64(port.received)
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
