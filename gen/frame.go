package gen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/xdpipe/xdpipe/internal/frame"
)

// Proto is the kind of frame a Template builds.
type Proto int

const (
	// UDP4 is Ethernet, IPv4, UDP (the zero value).
	UDP4 Proto = iota
	// UDP6 is Ethernet, IPv6, UDP.
	UDP6
	// TCP4SYN is Ethernet, IPv4, a TCP segment with only SYN set, carrying
	// the payload as data (legal, as in TCP Fast Open).
	TCP4SYN
	// TCP6SYN is the same over IPv6.
	TCP6SYN
)

var protoNames = [...]string{UDP4: "udp4", UDP6: "udp6", TCP4SYN: "tcp4syn", TCP6SYN: "tcp6syn"}

func (p Proto) String() string {
	if int(p) >= 0 && int(p) < len(protoNames) {
		return protoNames[p]
	}
	return fmt.Sprintf("Proto(%d)", int(p))
}

// ParseProto parses the names String returns.
func ParseProto(s string) (Proto, error) {
	for i, n := range protoNames {
		if strings.EqualFold(s, n) {
			return Proto(i), nil
		}
	}
	return 0, fmt.Errorf("unknown protocol %q (want one of %s)", s, strings.Join(protoNames[:], ", "))
}

func (p Proto) v6() bool  { return p == UDP6 || p == TCP6SYN }
func (p Proto) tcp() bool { return p == TCP4SYN || p == TCP6SYN }

// Vary says which field tells the flows apart.
type Vary int

const (
	// VarySrcPort gives flow i the source port SrcPort+i (the zero value).
	VarySrcPort Vary = iota
	// VarySrcAddr gives flow i the source address SrcIP+i (in its last 16
	// bits, wrapping there).
	VarySrcAddr
)

func (v Vary) String() string {
	switch v {
	case VarySrcPort:
		return "srcport"
	case VarySrcAddr:
		return "srcaddr"
	}
	return fmt.Sprintf("Vary(%d)", int(v))
}

// Sizes and header lengths. Size counts the bytes handed to the device,
// without the 4-byte FCS a wire would add.
const (
	MinFrameSize = 64
	MaxFrameSize = 9000
)

// HeaderLen is the length of a proto's Ethernet, IP and L4 headers.
func HeaderLen(p Proto) int {
	n := frame.EthLen + frame.UDPLen
	if p.tcp() {
		n = frame.EthLen + frame.TCPMinLen
	}
	if p.v6() {
		return n + frame.IPv6Len
	}
	return n + frame.IPv4MinLen
}

// MinSize is the smallest frame of proto p that carries the payload
// (HeaderLen plus PayloadLen), and never less than MinFrameSize.
func MinSize(p Proto) int { return max(MinFrameSize, HeaderLen(p)+PayloadLen) }

// Config describes the frames of a Template. Zero fields take the defaults
// documented on each.
type Config struct {
	Proto Proto
	// Size of each frame in bytes, without FCS: MinSize(Proto) ..
	// MaxFrameSize. Default MinSize(Proto).
	Size int
	// Flows is the number of flows, 1..65536 (default 1). Frame with
	// sequence number s belongs to flow s % Flows.
	Flows int
	// Vary picks the field that differs between flows.
	Vary Vary
	// SrcMAC and DstMAC are required.
	SrcMAC, DstMAC net.HardwareAddr
	// SrcIP and DstIP are required, both of the Proto's family.
	SrcIP, DstIP netip.Addr
	// SrcPort (default 10000) and DstPort (default 9, discard).
	SrcPort, DstPort uint16
}

// ErrBadConfig is wrapped by every validation error of NewTemplate.
var ErrBadConfig = errors.New("bad frame configuration")

func badConfig(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadConfig, fmt.Sprintf(format, args...))
}

// Template is a prebuilt frame and the recipe to stamp a sequence number,
// a timestamp and a flow into a copy of it, fixing the checksums
// incrementally (RFC 1624). It is immutable and safe for concurrent use.
type Template struct {
	cfg   Config
	frame []byte // flow 0, sequence 0, timestamp 0, checksums valid

	l3Off, l4Off, payOff int
	l4CsumOff            int // offset of the L4 checksum field
	ipCsumOff            int // IPv4 header checksum offset, 0 for IPv6
	varyOff              int // offset of the 16-bit word that names the flow
	varyBase             uint16
	// Sums of the complemented old words (RFC 1624 eqn. 3), native order:
	// l4K covers the L4 checksum, the vary word, seq and timestamp;
	// ipK covers the IPv4 header checksum and the vary word (VarySrcAddr).
	l4K, ipK uint64
}

// NewTemplate validates c and builds the frame.
func NewTemplate(c Config) (*Template, error) {
	if c.Proto < UDP4 || c.Proto > TCP6SYN {
		return nil, badConfig("unknown protocol %v", c.Proto)
	}
	if c.Size == 0 {
		c.Size = MinSize(c.Proto)
	}
	if c.Size < MinSize(c.Proto) {
		return nil, badConfig("frame size %d is below %d, the %s headers (%d bytes) plus the %d-byte payload (and at least %d)",
			c.Size, MinSize(c.Proto), c.Proto, HeaderLen(c.Proto), PayloadLen, MinFrameSize)
	}
	if c.Size > MaxFrameSize {
		return nil, badConfig("frame size %d is above %d", c.Size, MaxFrameSize)
	}
	if c.Flows == 0 {
		c.Flows = 1
	}
	if c.Flows < 1 || c.Flows > 65536 {
		return nil, badConfig("flows %d out of range 1..65536", c.Flows)
	}
	if c.Vary != VarySrcPort && c.Vary != VarySrcAddr {
		return nil, badConfig("unknown flow variation %v", c.Vary)
	}
	if len(c.SrcMAC) != 6 || len(c.DstMAC) != 6 {
		return nil, badConfig("source and destination MAC must be 6-byte Ethernet addresses (got %q, %q)", c.SrcMAC, c.DstMAC)
	}
	if !c.SrcIP.IsValid() || !c.DstIP.IsValid() {
		return nil, badConfig("source and destination IP are required")
	}
	c.SrcIP, c.DstIP = c.SrcIP.Unmap(), c.DstIP.Unmap()
	if c.Proto.v6() != c.SrcIP.Is6() || c.Proto.v6() != c.DstIP.Is6() {
		fam := "IPv4"
		if c.Proto.v6() {
			fam = "IPv6"
		}
		return nil, badConfig("%s needs %s addresses (got %s -> %s)", c.Proto, fam, c.SrcIP, c.DstIP)
	}
	if c.SrcPort == 0 {
		c.SrcPort = 10000
	}
	if c.DstPort == 0 {
		c.DstPort = 9
	}
	t := &Template{cfg: c}
	t.build()
	return t, nil
}

// Config returns the configuration with defaults filled in.
func (t *Template) Config() Config { return t.cfg }

// Len is the frame size in bytes.
func (t *Template) Len() int { return len(t.frame) }

// Bytes returns the frame of flow 0 with sequence number and timestamp 0.
// The slice is the template's own: do not modify it.
func (t *Template) Bytes() []byte { return t.frame }

// PayloadOffset is where the payload (Magic, sequence, timestamp) starts.
func (t *Template) PayloadOffset() int { return t.payOff }

func (t *Template) build() {
	c := t.cfg
	b := make([]byte, c.Size)
	// Padding after the payload: a pattern a receiver can check byte by byte.
	for i := range b {
		b[i] = byte(i)
	}
	copy(b[0:6], c.DstMAC)
	copy(b[6:12], c.SrcMAC)
	t.l3Off = frame.EthLen
	var l4Len int
	proto := byte(frame.ProtoUDP)
	if c.Proto.tcp() {
		proto = frame.ProtoTCP
	}
	if c.Proto.v6() {
		binary.BigEndian.PutUint16(b[12:], frame.EtherTypeIPv6)
		ip := b[frame.EthLen:]
		t.l4Off = frame.EthLen + frame.IPv6Len
		l4Len = c.Size - t.l4Off
		binary.BigEndian.PutUint32(ip[0:], 6<<28)
		binary.BigEndian.PutUint16(ip[4:], uint16(l4Len))
		ip[6] = proto
		ip[7] = 64
		s, d := c.SrcIP.As16(), c.DstIP.As16()
		copy(ip[8:24], s[:])
		copy(ip[24:40], d[:])
	} else {
		binary.BigEndian.PutUint16(b[12:], frame.EtherTypeIPv4)
		ip := b[frame.EthLen:]
		t.l4Off = frame.EthLen + frame.IPv4MinLen
		l4Len = c.Size - t.l4Off
		ip[0] = 0x45
		ip[1] = 0
		binary.BigEndian.PutUint16(ip[2:], uint16(frame.IPv4MinLen+l4Len))
		binary.BigEndian.PutUint16(ip[4:], 0)      // id
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
		ip[8] = 64
		ip[9] = proto
		ip[10], ip[11] = 0, 0
		s, d := c.SrcIP.As4(), c.DstIP.As4()
		copy(ip[12:16], s[:])
		copy(ip[16:20], d[:])
		binary.NativeEndian.PutUint16(ip[10:], ^frame.Fold(frame.Sum(ip[:frame.IPv4MinLen])))
		t.ipCsumOff = frame.EthLen + 10
	}
	l4 := b[t.l4Off:]
	binary.BigEndian.PutUint16(l4[0:], c.SrcPort)
	binary.BigEndian.PutUint16(l4[2:], c.DstPort)
	if c.Proto.tcp() {
		binary.BigEndian.PutUint32(l4[4:], 0x58445000) // initial sequence number
		binary.BigEndian.PutUint32(l4[8:], 0)
		l4[12] = 5 << 4 // data offset: 5 words, no options
		l4[13] = 0x02   // SYN
		binary.BigEndian.PutUint16(l4[14:], 65535)
		l4[16], l4[17] = 0, 0
		binary.BigEndian.PutUint16(l4[18:], 0)
		t.payOff = t.l4Off + frame.TCPMinLen
		t.l4CsumOff = t.l4Off + 16
	} else {
		binary.BigEndian.PutUint16(l4[4:], uint16(l4Len))
		l4[6], l4[7] = 0, 0
		t.payOff = t.l4Off + frame.UDPLen
		t.l4CsumOff = t.l4Off + 6
	}
	p := b[t.payOff:]
	binary.BigEndian.PutUint32(p[0:], Magic)
	clear(p[4:PayloadLen])

	// Checksum of the L4 segment with its pseudo-header.
	pseudo := [4]byte{0, proto, byte(l4Len >> 8), byte(l4Len)}
	s := frame.Sum(b[t.l4Off:]) + frame.Sum(pseudo[:])
	if c.Proto.v6() {
		s += frame.Sum(b[frame.EthLen+8 : frame.EthLen+40])
	} else {
		s += frame.Sum(b[frame.EthLen+12 : frame.EthLen+20])
	}
	csum := ^frame.Fold(s)
	if !c.Proto.tcp() && csum == 0 {
		csum = 0xffff
	}
	binary.NativeEndian.PutUint16(b[t.l4CsumOff:], csum)

	// The word that names the flow.
	switch {
	case c.Vary == VarySrcPort:
		t.varyOff = t.l4Off
		t.varyBase = c.SrcPort
	case c.Proto.v6():
		t.varyOff = frame.EthLen + 8 + 14
	default:
		t.varyOff = frame.EthLen + 12 + 2
	}
	if c.Vary == VarySrcAddr {
		t.varyBase = binary.BigEndian.Uint16(b[t.varyOff:])
	}
	t.frame = b

	// Precomputed halves of RFC 1624: HC' = ~(~HC + ~m + m').
	ne := binary.NativeEndian
	notw := func(off int) uint64 { return uint64(^ne.Uint16(b[off:])) }
	t.l4K = notw(t.l4CsumOff) + notw(t.varyOff)
	for off := t.payOff + 4; off < t.payOff+PayloadLen; off += 2 {
		t.l4K += notw(off)
	}
	if c.Vary == VarySrcAddr && t.ipCsumOff != 0 {
		t.ipK = notw(t.ipCsumOff) + notw(t.varyOff)
	}
}

// Stamp writes into f (a copy of Bytes, at least Len long) the flow of
// seq, seq itself and the send timestamp ts, and fixes the checksums, as
// the live engine's XDP program does in the kernel. It allocates nothing.
func (t *Template) Stamp(f []byte, seq uint64, ts int64) {
	_ = f[t.payOff+PayloadLen-1]
	ne := binary.NativeEndian
	flow := uint16(seq % uint64(t.cfg.Flows))
	binary.BigEndian.PutUint16(f[t.varyOff:], t.varyBase+flow)
	vary := uint64(ne.Uint16(f[t.varyOff:]))
	binary.LittleEndian.PutUint64(f[t.payOff+4:], seq)
	binary.LittleEndian.PutUint64(f[t.payOff+12:], uint64(ts))
	s := t.l4K + vary + frame.Sum(f[t.payOff+4:t.payOff+PayloadLen])
	c := ^frame.Fold(s)
	if !t.cfg.Proto.tcp() && c == 0 {
		c = 0xffff
	}
	ne.PutUint16(f[t.l4CsumOff:], c)
	if t.ipK != 0 {
		ne.PutUint16(f[t.ipCsumOff:], ^frame.Fold(t.ipK+vary))
	}
}

// Verify reports whether frame is a whole, intact frame of this template:
// same length, and every byte equal to the template's except the ones
// Stamp writes (flow word, checksums, sequence number, timestamp).
func (t *Template) Verify(frame []byte) error {
	if len(frame) != len(t.frame) {
		return fmt.Errorf("frame length %d, want %d", len(frame), len(t.frame))
	}
	skip := func(i int) bool {
		return (i >= t.varyOff && i < t.varyOff+2) ||
			(i >= t.l4CsumOff && i < t.l4CsumOff+2) ||
			(t.ipK != 0 && i >= t.ipCsumOff && i < t.ipCsumOff+2) ||
			(i >= t.payOff+4 && i < t.payOff+PayloadLen)
	}
	for i := range frame {
		if frame[i] != t.frame[i] && !skip(i) {
			return fmt.Errorf("frame differs from the template at byte %d of %d: %#02x, want %#02x", i, len(frame), frame[i], t.frame[i])
		}
	}
	return nil
}
