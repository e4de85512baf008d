package pipeline

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/monotime"
)

// PcapOptions configure a capture stage. The zero value, with a Path, works.
type PcapOptions struct {
	// Path of the first capture file. Rotation numbers the next ones before
	// the extension: cap.pcap, cap.1.pcap, cap.2.pcap, ...
	Path string
	// SnapLen is the most bytes kept per frame (default 262144, tcpdump's).
	SnapLen uint32
	// MaxBytes rotates to a new file once a file reaches this size (0: never).
	MaxBytes int64
	// MaxFiles keeps at most this many files, removing the oldest on
	// rotation, like tcpdump -W (0: no limit).
	MaxFiles int
	// Mode is the capture files' permission bits (default 0600: captured
	// traffic is for root only). Set on files that existed before too.
	Mode os.FileMode
	// BufferSize is the write buffer (default 256 KiB).
	BufferSize int
	// FlushInterval writes buffered records out at least this often while
	// frames arrive (default 1s), so a capture file lags by at most that.
	FlushInterval time.Duration
	// RetryAfter is how long a failed capture (disk full) waits before it
	// opens a new file (default 1s). Frames in between are counted in Lost.
	RetryAfter time.Duration
	// Logger reports failures (default slog.Default()), at most one line per
	// RetryAfter.
	Logger *slog.Logger
}

// Pcap writes every live packet to a pcap file (libpcap format, Ethernet
// link type, microsecond timestamps) with gopacket's pcapgo, readable by
// tshark and Wireshark. It never changes a verdict: when writing fails (disk
// full) the error is counted and logged, the frames are counted in Lost,
// and forwarding goes on; the stage tries a fresh file after RetryAfter.
//
// The first file is opened at the first frame, and held with flock(2)
// while it is written: a capture never truncates or writes into a file
// another live capture holds (a second instance); it writes the next free
// name instead. A file is truncated only when a capture starts on its
// name, as tcpdump -w does, and removed only by its own capture's rotation
// (MaxFiles): a reload with unchanged options continues the capture
// (Continue), one with other options writes names the capture it replaces
// never had. Capture files are regular files: a FIFO, a device or a file
// of a kernel file system (procfs, sysfs) is refused.
//
// Pcap is the one built-in stage that blocks (on the file write), so put it
// on a worker whose rate the disk can take, or behind a filter or sampler.
type Pcap struct {
	opts   PcapOptions
	c      *capture // shared with the stage this one continues
	closed atomic.Bool

	// Packets and Bytes count what was written (Bytes: captured length plus
	// the 16-byte record header). Errors counts failed writes or opens;
	// Lost the frames not captured because of them.
	Packets, Bytes, Errors, Lost atomic.Uint64
}

var (
	_ Stage     = (*Pcap)(nil)
	_ Metered   = (*Pcap)(nil)
	_ Continuer = (*Pcap)(nil)
)

// capture is an open capture: the file, its rotation, and the stages
// writing it (more than one between a reload's swap and the old chain's
// Close).
type capture struct {
	opts    PcapOptions
	mu      sync.Mutex // Process vs Flush/Close/Files from other goroutines
	refs    int
	f       *os.File
	bw      *bufio.Writer
	scratch []byte // a multi-buffer packet's segments, joined
	w       *pcapgo.Writer
	size    int64
	seq     int
	files   []string
	failed  bool
	excl    bool  // met a name held by another capture: only new names from now
	retry   int64 // pipeline time of the next reopen attempt
	flushed int64 // pipeline time of the last flush
}

// NewPcap checks that the first capture file can be written, without
// creating it (CheckCapturePath): an unwritable path is an error here,
// before anything is attached. The file is opened at the first frame.
func NewPcap(opts PcapOptions) (*Pcap, error) {
	if opts.Path == "" {
		return nil, fmt.Errorf("pcap: no path")
	}
	if opts.SnapLen == 0 {
		opts.SnapLen = 262144
	}
	opts.BufferSize = cmp.Or(opts.BufferSize, defaultPcapBuffer)
	if opts.FlushInterval == 0 {
		opts.FlushInterval = time.Second
	}
	if opts.RetryAfter == 0 {
		opts.RetryAfter = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Mode == 0 {
		opts.Mode = 0o600
	}
	if opts.MaxBytes < 0 || opts.MaxFiles < 0 {
		return nil, fmt.Errorf("pcap: negative max bytes or max files")
	}
	if opts.Mode&^os.ModePerm != 0 {
		return nil, fmt.Errorf("pcap: mode %v: want permission bits only", opts.Mode)
	}
	if err := CheckCapturePath(opts.Path); err != nil {
		return nil, err
	}
	return &Pcap{opts: opts, c: &capture{opts: opts, refs: 1}}, nil
}

// StageName implements Named.
func (*Pcap) StageName() string { return "pcap" }

// Counters implements Metered.
func (p *Pcap) Counters(emit func(d *CounterDesc, v uint64, labels ...string)) {
	emit(mStagePkts, p.Packets.Load())
	emit(mStageErrors, p.Errors.Load())
	emit(mStageLost, p.Lost.Load())
}

// PcapStageOptions are the pcap stage's options in a configuration file.
type PcapStageOptions struct {
	// Path of the capture file; with several workers each writes its own,
	// the queue before the extension (cap.q1.pcap).
	Path string `yaml:"path"`
	// SnapLen, MaxBytes, MaxFiles and Buffer: PcapOptions' SnapLen,
	// MaxBytes, MaxFiles and BufferSize.
	SnapLen  int   `yaml:"snaplen"`
	MaxBytes int64 `yaml:"max_bytes"`
	MaxFiles int   `yaml:"max_files"`
	Buffer   int   `yaml:"buffer"`
	// Mode is the files' permission bits, octal (default 0600).
	Mode os.FileMode `yaml:"mode"`
}

// defaultPcapBuffer is PcapOptions.BufferSize's default.
const defaultPcapBuffer = 256 << 10

// MemoryCost implements Costly: the write buffer.
func (o *PcapStageOptions) MemoryCost() (uint64, string) {
	return costOf(o.Buffer, defaultPcapBuffer), "buffer"
}

func newPcapStage(o *PcapStageOptions, env StageEnv) (Stage, error) {
	if o.Path == "" {
		return nil, errors.New("needs path")
	}
	if o.SnapLen < 0 || o.MaxBytes < 0 || o.MaxFiles < 0 || o.Buffer < 0 {
		return nil, errors.New("snaplen, max_bytes, max_files and buffer must not be negative")
	}
	path := o.Path
	if env.PerQueue {
		ext := filepath.Ext(path)
		path = fmt.Sprintf("%s.q%d%s", strings.TrimSuffix(path, ext), env.Queue, ext)
	}
	if env.CheckOnly {
		return nil, CheckCapturePath(path)
	}
	return NewPcap(PcapOptions{Path: path, SnapLen: uint32(o.SnapLen), MaxBytes: o.MaxBytes, MaxFiles: o.MaxFiles,
		BufferSize: o.Buffer, Mode: o.Mode})
}

// CheckCapturePath says whether a capture could write path, without
// creating it: its directory is writable, and not on a kernel file system
// (procfs, sysfs, ...), and the file, if there, is a writable regular file
// (not a FIFO, which would block the open, or a device).
func CheckCapturePath(path string) error {
	dir := filepath.Dir(path)
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return fmt.Errorf("pcap: directory of %s: %w", path, err)
	}
	if name, ok := kernelFS[int64(fs.Type)]; ok {
		return fmt.Errorf("pcap: %s is on %s, which holds no capture files; choose a path on a disk or tmpfs", path, name)
	}
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("pcap: directory of %s: %w", path, err)
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("pcap: %w", err)
	case !st.Mode().IsRegular():
		return fmt.Errorf("pcap: %s is not a regular file (%s)", path, fileKind(st.Mode()))
	}
	if err := unix.Access(path, unix.W_OK); err != nil {
		return fmt.Errorf("pcap: %s: %w", path, err)
	}
	return nil
}

// kernelFS names the file systems whose files are the kernel's objects, not
// data: a capture must not write there.
var kernelFS = map[int64]string{
	unix.PROC_SUPER_MAGIC: "procfs", unix.SYSFS_MAGIC: "sysfs", unix.CGROUP_SUPER_MAGIC: "cgroupfs",
	unix.CGROUP2_SUPER_MAGIC: "cgroup2", unix.BPF_FS_MAGIC: "bpffs", unix.DEBUGFS_MAGIC: "debugfs",
	unix.TRACEFS_MAGIC: "tracefs", unix.SECURITYFS_MAGIC: "securityfs", unix.DEVPTS_SUPER_MAGIC: "devpts",
	unix.EFIVARFS_MAGIC: "efivarfs", unix.PSTOREFS_MAGIC: "pstore", unix.SELINUX_MAGIC: "selinuxfs",
}

// fileKind names what a file that is not a regular file is.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return m.Type().String()
}

// Continue implements Continuer: when old is a capture with the same
// options, p writes on in old's file (and rotation) instead of its own.
// When old writes the same path with other options, p's capture takes only
// names that do not exist from old's next one on: old's files, which it
// no longer holds once it rotated past them, are not p's to truncate.
func (p *Pcap) Continue(old Stage) {
	o, ok := old.(*Pcap)
	if !ok || o == p || o.c == p.c || o.closed.Load() || o.opts.Path != p.opts.Path {
		return
	}
	o.c.mu.Lock()
	same := sameCapture(o.opts, p.opts)
	if same {
		o.c.refs++
	}
	seq := o.c.seq
	o.c.mu.Unlock()
	if same {
		p.c.release()
		p.c = o.c
		return
	}
	p.c.mu.Lock()
	p.c.excl, p.c.seq = true, max(p.c.seq, seq)
	p.c.mu.Unlock()
}

// sameCapture: everything but the logger is equal.
func sameCapture(a, b PcapOptions) bool {
	a.Logger, b.Logger = nil, nil
	return a == b
}

// fileName is the name of the seq'th capture file.
func (c *capture) fileName(seq int) string {
	if seq == 0 {
		return c.opts.Path
	}
	ext := filepath.Ext(c.opts.Path)
	return fmt.Sprintf("%s.%d%s", strings.TrimSuffix(c.opts.Path, ext), seq, ext)
}

// maxHeld is how many names held by other captures open skips.
const maxHeld = 1000

// open starts the next capture file. A name another live capture holds is
// skipped, and so, from then on, is every name that exists: they may be
// that capture's next files.
func (c *capture) open() error {
	skipped := 0
	for {
		name := c.fileName(c.seq)
		flags := os.O_WRONLY
		if c.excl {
			flags |= os.O_EXCL
		}
		f, err := lockCaptureFile(name, flags, c.opts.Mode)
		if err == nil {
			if skipped > 0 {
				c.opts.Logger.Warn("pcap file in use by another capture; writing a new one", "path", c.opts.Path, "file", name)
			}
			return c.start(f)
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("pcap: %w", err)
		}
		if skipped == maxHeld {
			return fmt.Errorf("pcap: %s and the next %d names are in use by other captures", c.opts.Path, maxHeld)
		}
		c.excl = true
		c.seq++
		skipped++
	}
}

// start writes the file header to f, the new current file.
func (c *capture) start(f *os.File) error {
	if c.bw == nil {
		c.bw = bufio.NewWriterSize(f, c.opts.BufferSize)
	} else {
		c.bw.Reset(f)
	}
	w := pcapgo.NewWriter(c.bw)
	if err := w.WriteFileHeader(c.opts.SnapLen, layers.LinkTypeEthernet); err != nil {
		f.Close()
		return fmt.Errorf("pcap: write header: %w", err)
	}
	if err := c.bw.Flush(); err != nil { // find a full disk or a bad device now
		f.Close()
		return fmt.Errorf("pcap: write header: %w", err)
	}
	c.f, c.w, c.size = f, w, 24
	c.files = append(c.files, f.Name())
	c.seq++
	if c.opts.MaxFiles > 0 && len(c.files) > c.opts.MaxFiles {
		if err := os.Remove(c.files[0]); err != nil && !errors.Is(err, os.ErrNotExist) {
			c.opts.Logger.Warn("pcap: removing the oldest capture file", "err", err)
		}
		c.files = c.files[1:]
	}
	return nil
}

// lockCaptureFile opens name for writing, refuses anything but a regular
// file (non-blocking: a FIFO without a reader must not hang the open), takes
// its flock (EWOULDBLOCK: another capture holds it) and only then empties
// it and sets its mode.
func lockCaptureFile(name string, flags int, mode os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(name, flags|os.O_CREATE|unix.O_NONBLOCK, mode)
	if errors.Is(err, unix.ENXIO) { // a FIFO without a reader, a device without its hardware
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file (%s)", name, fileKind(st.Mode()))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	if err = f.Truncate(0); err == nil {
		err = f.Chmod(mode)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// closeFile flushes and closes the current file.
func (c *capture) closeFile() error {
	if c.f == nil {
		return nil
	}
	err := c.bw.Flush()
	if cerr := c.f.Close(); err == nil {
		err = cerr
	}
	c.f, c.w = nil, nil
	return err
}

// fail records a write or open error: the current file is abandoned and a
// new one tried after RetryAfter.
func (c *capture) fail(p *Pcap, now int64, err error) {
	p.Errors.Add(1)
	if !c.failed {
		c.opts.Logger.Error("pcap capture failing, forwarding continues", "path", c.opts.Path, "err", err,
			"retry_after", c.opts.RetryAfter)
	}
	c.failed = true
	if c.f != nil {
		c.bw.Reset(nil) // discard what cannot be written
		c.f.Close()
		c.f, c.w = nil, nil
	}
	c.retry = now + int64(c.opts.RetryAfter)
}

// release drops one stage's reference; the last one closes the file.
func (c *capture) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refs--; c.refs > 0 {
		return nil
	}
	if err := c.closeFile(); err != nil {
		return errors.Join(fmt.Errorf("pcap: close %s", c.fileName(c.seq-1)), err)
	}
	return nil
}

// Process implements Stage.
func (p *Pcap) Process(b *Burst) {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.closed.Load() {
		return
	}
	var n, bytes, lost uint64
	for i := range b.Pkts {
		pk := &b.Pkts[i]
		if pk.Verdict == VerdictDrop {
			continue
		}
		if c.w == nil {
			if b.Time < c.retry {
				lost++
				continue
			}
			if err := c.open(); err != nil {
				c.fail(p, b.Time, err)
				lost++
				continue
			}
			if c.failed {
				c.opts.Logger.Info("pcap capture resumed", "file", c.files[len(c.files)-1])
				c.failed = false
			}
		}
		data, length := pk.Data, pk.Len()
		if len(pk.More) > 0 && len(data) < int(c.opts.SnapLen) {
			// A multi-buffer packet: its segments, joined up to the snap
			// length, in scratch that grows to the largest such packet.
			want := min(length, int(c.opts.SnapLen))
			if cap(c.scratch) < want {
				c.scratch = make([]byte, want)
			}
			data = c.scratch[:b.CopyPacket(c.scratch[:want], pk)]
		}
		if uint32(len(data)) > c.opts.SnapLen {
			data = data[:c.opts.SnapLen]
		}
		ci := gopacket.CaptureInfo{Timestamp: monotime.Wall(pk.Time), CaptureLength: len(data), Length: length}
		if err := c.w.WritePacket(ci, data); err != nil {
			c.fail(p, b.Time, err)
			lost++
			continue
		}
		n++
		rec := int64(16 + len(data))
		bytes += uint64(rec)
		c.size += rec
		if c.opts.MaxBytes > 0 && c.size >= c.opts.MaxBytes {
			if err := c.closeFile(); err != nil {
				c.fail(p, b.Time, err)
				continue
			}
			if err := c.open(); err != nil {
				c.fail(p, b.Time, err)
			}
		}
	}
	if c.f != nil && b.Time-c.flushed >= int64(c.opts.FlushInterval) {
		c.flushed = b.Time
		if err := c.bw.Flush(); err != nil {
			c.fail(p, b.Time, err)
		}
	}
	p.Packets.Add(n)
	p.Bytes.Add(bytes)
	if lost != 0 {
		p.Lost.Add(lost)
	}
}

// Flush writes buffered records to the file.
func (p *Pcap) Flush() error {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return nil
	}
	if err := c.bw.Flush(); err != nil {
		c.fail(p, monotime.Now(), err)
		return fmt.Errorf("pcap: %w", err)
	}
	return nil
}

// Files lists the capture files written so far and still kept (MaxFiles),
// oldest first; after Continue, those of the capture continued too.
func (p *Pcap) Files() []string {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.files...)
}

// Close flushes and closes the capture, unless a stage that continues it
// still writes. Idempotent.
func (p *Pcap) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	return p.c.release()
}
