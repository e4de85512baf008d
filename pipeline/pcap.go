package pipeline

import (
	"bufio"
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
	"github.com/prometheus/client_golang/prometheus"
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
// Pcap is the one built-in stage that blocks (on the file write), so put it
// on a worker whose rate the disk can take, or behind a filter or sampler.
type Pcap struct {
	opts PcapOptions

	mu      sync.Mutex // Process vs Flush/Close/Files from other goroutines
	f       *os.File
	bw      *bufio.Writer
	w       *pcapgo.Writer
	size    int64
	seq     int
	files   []string
	failed  bool
	retry   int64 // pipeline time of the next reopen attempt
	flushed int64 // pipeline time of the last flush
	closed  bool

	// Packets and Bytes count what was written (Bytes: captured length plus
	// the 16-byte record header). Errors counts failed writes or opens;
	// Lost the frames not captured because of them.
	Packets, Bytes, Errors, Lost atomic.Uint64
}

var (
	_ Stage   = (*Pcap)(nil)
	_ Metered = (*Pcap)(nil)
)

// NewPcap opens the first capture file. An unwritable path is an error here,
// before anything is attached.
func NewPcap(opts PcapOptions) (*Pcap, error) {
	if opts.Path == "" {
		return nil, fmt.Errorf("pcap: no path")
	}
	if opts.SnapLen == 0 {
		opts.SnapLen = 262144
	}
	if opts.BufferSize == 0 {
		opts.BufferSize = 256 << 10
	}
	if opts.FlushInterval == 0 {
		opts.FlushInterval = time.Second
	}
	if opts.RetryAfter == 0 {
		opts.RetryAfter = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("pcap: negative max bytes")
	}
	p := &Pcap{opts: opts}
	if err := p.open(); err != nil {
		return nil, err
	}
	return p, nil
}

// StageName implements Named.
func (*Pcap) StageName() string { return "pcap" }

// Counters implements Metered.
func (p *Pcap) Counters(emit func(d *prometheus.Desc, v uint64, labels ...string)) {
	emit(mStagePkts, p.Packets.Load())
	emit(mStageErrors, p.Errors.Load())
	emit(mStageLost, p.Lost.Load())
}

// PcapStageOptions are the pcap stage's options in a configuration file.
type PcapStageOptions struct {
	// Path of the capture file; with several workers each writes its own,
	// the queue before the extension (cap.q1.pcap).
	Path string `yaml:"path"`
	// SnapLen, MaxBytes and Buffer: PcapOptions' SnapLen, MaxBytes and
	// BufferSize.
	SnapLen  int   `yaml:"snaplen"`
	MaxBytes int64 `yaml:"max_bytes"`
	Buffer   int   `yaml:"buffer"`
}

func newPcapStage(o *PcapStageOptions, env StageEnv) (Stage, error) {
	if o.Path == "" {
		return nil, errors.New("needs path")
	}
	if o.SnapLen < 0 || o.MaxBytes < 0 || o.Buffer < 0 {
		return nil, errors.New("snaplen, max_bytes and buffer must not be negative")
	}
	path := o.Path
	if env.PerQueue {
		ext := filepath.Ext(path)
		path = fmt.Sprintf("%s.q%d%s", strings.TrimSuffix(path, ext), env.Queue, ext)
	}
	return NewPcap(PcapOptions{Path: path, SnapLen: uint32(o.SnapLen), MaxBytes: o.MaxBytes, BufferSize: o.Buffer})
}

// fileName is the name of the seq'th capture file.
func (p *Pcap) fileName(seq int) string {
	if seq == 0 {
		return p.opts.Path
	}
	ext := filepath.Ext(p.opts.Path)
	return fmt.Sprintf("%s.%d%s", strings.TrimSuffix(p.opts.Path, ext), seq, ext)
}

func (p *Pcap) open() error {
	name := p.fileName(p.seq)
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("pcap: %w", err)
	}
	if p.bw == nil {
		p.bw = bufio.NewWriterSize(f, p.opts.BufferSize)
	} else {
		p.bw.Reset(f)
	}
	w := pcapgo.NewWriter(p.bw)
	if err := w.WriteFileHeader(p.opts.SnapLen, layers.LinkTypeEthernet); err != nil {
		f.Close()
		return fmt.Errorf("pcap: write header: %w", err)
	}
	if err := p.bw.Flush(); err != nil { // find a full disk or a bad device now
		f.Close()
		return fmt.Errorf("pcap: write header: %w", err)
	}
	p.f, p.w, p.size = f, w, 24
	p.files = append(p.files, name)
	p.seq++
	return nil
}

// closeFile flushes and closes the current file.
func (p *Pcap) closeFile() error {
	if p.f == nil {
		return nil
	}
	err := p.bw.Flush()
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	p.f, p.w = nil, nil
	return err
}

// fail records a write or open error: the current file is abandoned and a
// new one tried after RetryAfter.
func (p *Pcap) fail(now int64, err error) {
	p.Errors.Add(1)
	if !p.failed {
		p.opts.Logger.Error("pcap capture failing, forwarding continues", "path", p.opts.Path, "err", err,
			"retry_after", p.opts.RetryAfter)
	}
	p.failed = true
	if p.f != nil {
		p.bw.Reset(nil) // discard what cannot be written
		p.f.Close()
		p.f, p.w = nil, nil
	}
	p.retry = now + int64(p.opts.RetryAfter)
}

// Process implements Stage.
func (p *Pcap) Process(b *Burst) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	var n, bytes, lost uint64
	for i := range b.Pkts {
		pk := &b.Pkts[i]
		if pk.Verdict == VerdictDrop {
			continue
		}
		if p.w == nil {
			if b.Time < p.retry || p.closed {
				lost++
				continue
			}
			if err := p.open(); err != nil {
				p.fail(b.Time, err)
				lost++
				continue
			}
			if p.failed {
				p.opts.Logger.Info("pcap capture resumed", "file", p.files[len(p.files)-1])
				p.failed = false
			}
		}
		data := pk.Data
		if uint32(len(data)) > p.opts.SnapLen {
			data = data[:p.opts.SnapLen]
		}
		ci := gopacket.CaptureInfo{Timestamp: WallTime(pk.Time), CaptureLength: len(data), Length: len(pk.Data)}
		if err := p.w.WritePacket(ci, data); err != nil {
			p.fail(b.Time, err)
			lost++
			continue
		}
		n++
		rec := int64(16 + len(data))
		bytes += uint64(rec)
		p.size += rec
		if p.opts.MaxBytes > 0 && p.size >= p.opts.MaxBytes {
			if err := p.closeFile(); err != nil {
				p.fail(b.Time, err)
				continue
			}
			if err := p.open(); err != nil {
				p.fail(b.Time, err)
			}
		}
	}
	if p.f != nil && b.Time-p.flushed >= int64(p.opts.FlushInterval) {
		p.flushed = b.Time
		if err := p.bw.Flush(); err != nil {
			p.fail(b.Time, err)
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
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.f == nil {
		return nil
	}
	if err := p.bw.Flush(); err != nil {
		p.fail(Now(), err)
		return fmt.Errorf("pcap: %w", err)
	}
	return nil
}

// Files lists the capture files written so far, oldest first.
func (p *Pcap) Files() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.files...)
}

// Close flushes and closes the capture. Idempotent.
func (p *Pcap) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if err := p.closeFile(); err != nil {
		return errors.Join(fmt.Errorf("pcap: close %s", p.fileName(p.seq-1)), err)
	}
	return nil
}
