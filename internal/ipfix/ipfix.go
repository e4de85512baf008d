// Package ipfix writes IPFIX messages (RFC 7011) of flow records with a
// fixed pair of templates, one for IPv4 flows and one for IPv6, into a
// caller-owned buffer, allocating nothing. It is the wire format of the
// pipeline's ipfix stage; Decode reads it back for tests.
//
// The Go IPFIX libraries build messages out of per-record element values
// (interfaces and slices), which allocate for every record; the stage
// encodes on the worker, where nothing may allocate, and needs two fixed
// templates only.
package ipfix

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Version is the IPFIX message version number.
const Version = 10

// Set IDs: 2 is a template set (RFC 7011 section 3.3.2); data sets carry
// the ID of their template, 256 and up.
const (
	TemplateSetID = 2
	TemplateV4    = 256
	TemplateV6    = 257
)

// Information elements (IANA "IPFIX Information Elements" registry).
const (
	IEOctetDeltaCount          = 1
	IEPacketDeltaCount         = 2
	IEProtocolIdentifier       = 4
	IESourceTransportPort      = 7
	IESourceIPv4Address        = 8
	IEIngressInterface         = 10
	IEDestinationTransportPort = 11
	IEDestinationIPv4Address   = 12
	IESourceIPv6Address        = 27
	IEDestinationIPv6Address   = 28
	IEVlanID                   = 58
	IEFlowStartMilliseconds    = 152
	IEFlowEndMilliseconds      = 153
)

// Field is one template field: an element and its length on the wire.
type Field struct{ ID, Len uint16 }

// The templates' fields, in record order. Both end with the same counters
// and times.
var (
	FieldsV4 = [...]Field{{IESourceIPv4Address, 4}, {IEDestinationIPv4Address, 4}, {IESourceTransportPort, 2},
		{IEDestinationTransportPort, 2}, {IEProtocolIdentifier, 1}, {IEVlanID, 2}, {IEIngressInterface, 4},
		{IEPacketDeltaCount, 8}, {IEOctetDeltaCount, 8}, {IEFlowStartMilliseconds, 8}, {IEFlowEndMilliseconds, 8}}
	FieldsV6 = [...]Field{{IESourceIPv6Address, 16}, {IEDestinationIPv6Address, 16}, {IESourceTransportPort, 2},
		{IEDestinationTransportPort, 2}, {IEProtocolIdentifier, 1}, {IEVlanID, 2}, {IEIngressInterface, 4},
		{IEPacketDeltaCount, 8}, {IEOctetDeltaCount, 8}, {IEFlowStartMilliseconds, 8}, {IEFlowEndMilliseconds, 8}}
)

// Lengths on the wire.
const (
	HeaderLen    = 16 // message header
	SetHeaderLen = 4
	RecordLenV4  = 4 + 4 + 2 + 2 + 1 + 2 + 4 + 8 + 8 + 8 + 8
	RecordLenV6  = 16 + 16 + 2 + 2 + 1 + 2 + 4 + 8 + 8 + 8 + 8
	// TemplatesLen is the template set holding both templates.
	TemplatesLen = SetHeaderLen + 2*4 + 4*(len(FieldsV4)+len(FieldsV6))
	// MinMessage is the smallest buffer a Writer takes: the header, the
	// templates and one IPv6 data set of one record.
	MinMessage = HeaderLen + TemplatesLen + SetHeaderLen + RecordLenV6
	// MaxMessage is the largest message (the header's length is 16 bits).
	MaxMessage = 65535
)

// Record is one flow record.
type Record struct {
	// V6 selects the IPv6 template; an IPv4 record uses Src[:4], Dst[:4].
	V6               bool
	Src, Dst         [16]byte
	SrcPort, DstPort uint16
	Proto            uint8
	VLAN             uint16 // the VLAN ID (12 bits), 0 for untagged
	Ingress          uint32 // ingressInterface: the interface index
	Packets, Octets  uint64 // since the flow's previous record
	Start, End       uint64 // flowStart/EndMilliseconds: ms since the Unix epoch
}

// Writer builds one message at a time in its buffer. One goroutine only.
type Writer struct {
	buf     []byte
	n       int    // bytes used
	set     int    // offset of the open data set's header, or 0 for none
	setID   uint16 // its template
	records uint32 // data records in the message
	domain  uint32
}

// NewWriter makes a writer of messages up to size bytes
// (MinMessage..MaxMessage) for an observation domain.
func NewWriter(size int, domain uint32) (*Writer, error) {
	if size < MinMessage || size > MaxMessage {
		return nil, fmt.Errorf("ipfix: message size %d: want %d..%d", size, MinMessage, MaxMessage)
	}
	return &Writer{buf: make([]byte, size), domain: domain}, nil
}

// Begin starts a new message, dropping whatever was written.
func (w *Writer) Begin() {
	w.n, w.set, w.records = HeaderLen, 0, 0
}

// Records is the number of data records in the message.
func (w *Writer) Records() int { return int(w.records) }

// Empty reports whether the message holds no set.
func (w *Writer) Empty() bool { return w.n <= HeaderLen }

// AddTemplates appends the template set with both templates. It reports
// false, writing nothing, when the message has no room (or holds a data
// set: templates go first).
func (w *Writer) AddTemplates() bool {
	if w.set != 0 || w.n+TemplatesLen > len(w.buf) {
		return false
	}
	b := w.buf[w.n : w.n+TemplatesLen]
	binary.BigEndian.PutUint16(b[0:], TemplateSetID)
	binary.BigEndian.PutUint16(b[2:], uint16(TemplatesLen))
	p := SetHeaderLen
	p = putTemplate(b, p, TemplateV4, FieldsV4[:])
	putTemplate(b, p, TemplateV6, FieldsV6[:])
	w.n += TemplatesLen
	return true
}

func putTemplate(b []byte, p int, id uint16, fields []Field) int {
	binary.BigEndian.PutUint16(b[p:], id)
	binary.BigEndian.PutUint16(b[p+2:], uint16(len(fields)))
	p += 4
	for _, f := range fields {
		binary.BigEndian.PutUint16(b[p:], f.ID)
		binary.BigEndian.PutUint16(b[p+2:], f.Len)
		p += 4
	}
	return p
}

// Add appends r, in a data set of its template (opening one when the
// last set is of the other). It reports false, writing nothing, when the
// message has no room: send it, Begin, and add r to the next.
func (w *Writer) Add(r *Record) bool {
	id, n := uint16(TemplateV4), RecordLenV4
	if r.V6 {
		id, n = TemplateV6, RecordLenV6
	}
	need := n
	if w.set == 0 || w.setID != id {
		need += SetHeaderLen
	}
	if w.n+need > len(w.buf) {
		return false
	}
	if need > n {
		w.closeSet()
		w.set, w.setID = w.n, id
		binary.BigEndian.PutUint16(w.buf[w.n:], id)
		w.n += SetHeaderLen
	}
	b := w.buf[w.n : w.n+n]
	p := 0
	if r.V6 {
		copy(b[0:16], r.Src[:])
		copy(b[16:32], r.Dst[:])
		p = 32
	} else {
		copy(b[0:4], r.Src[:4])
		copy(b[4:8], r.Dst[:4])
		p = 8
	}
	binary.BigEndian.PutUint16(b[p:], r.SrcPort)
	binary.BigEndian.PutUint16(b[p+2:], r.DstPort)
	b[p+4] = r.Proto
	binary.BigEndian.PutUint16(b[p+5:], r.VLAN)
	binary.BigEndian.PutUint32(b[p+7:], r.Ingress)
	binary.BigEndian.PutUint64(b[p+11:], r.Packets)
	binary.BigEndian.PutUint64(b[p+19:], r.Octets)
	binary.BigEndian.PutUint64(b[p+27:], r.Start)
	binary.BigEndian.PutUint64(b[p+35:], r.End)
	w.n += n
	w.records++
	return true
}

// closeSet writes the open data set's length.
func (w *Writer) closeSet() {
	if w.set != 0 {
		binary.BigEndian.PutUint16(w.buf[w.set+2:], uint16(w.n-w.set))
		w.set = 0
	}
}

// Finish writes the header and returns the message, valid until the next
// Begin. exportTime is in seconds since the Unix epoch; seq is the
// sequence number: the data records sent in the transport session and
// observation domain before this message (RFC 7011 section 3.1), modulo
// 2^32, which the sender keeps.
func (w *Writer) Finish(exportTime, seq uint32) []byte {
	w.closeSet()
	b := w.buf
	binary.BigEndian.PutUint16(b[0:], Version)
	binary.BigEndian.PutUint16(b[2:], uint16(w.n))
	binary.BigEndian.PutUint32(b[4:], exportTime)
	binary.BigEndian.PutUint32(b[8:], seq)
	binary.BigEndian.PutUint32(b[12:], w.domain)
	return b[:w.n]
}

// Header is a message header as Decode reads it.
type Header struct {
	Length     uint16
	ExportTime uint32
	Sequence   uint32
	Domain     uint32
}

// ErrFormat is wrapped by Decode's errors.
var ErrFormat = errors.New("ipfix: bad message")

// Decode reads a message this package writes: its header, whether it
// holds the template set (checked byte for byte against ours), and its
// data records. It is for tests and tools, and allocates.
func Decode(msg []byte) (h Header, templates bool, recs []Record, err error) {
	if len(msg) < HeaderLen {
		return h, false, nil, fmt.Errorf("%w: %d bytes, shorter than a header", ErrFormat, len(msg))
	}
	if v := binary.BigEndian.Uint16(msg); v != Version {
		return h, false, nil, fmt.Errorf("%w: version %d", ErrFormat, v)
	}
	h = Header{Length: binary.BigEndian.Uint16(msg[2:]), ExportTime: binary.BigEndian.Uint32(msg[4:]),
		Sequence: binary.BigEndian.Uint32(msg[8:]), Domain: binary.BigEndian.Uint32(msg[12:])}
	if int(h.Length) != len(msg) {
		return h, false, nil, fmt.Errorf("%w: length field %d, message %d bytes", ErrFormat, h.Length, len(msg))
	}
	var want [TemplatesLen]byte
	tw := Writer{buf: make([]byte, MinMessage)}
	tw.Begin()
	tw.AddTemplates()
	copy(want[:], tw.buf[HeaderLen:])
	for p := HeaderLen; p < len(msg); {
		if p+SetHeaderLen > len(msg) {
			return h, templates, recs, fmt.Errorf("%w: set header cut at %d", ErrFormat, p)
		}
		id, n := binary.BigEndian.Uint16(msg[p:]), int(binary.BigEndian.Uint16(msg[p+2:]))
		if n < SetHeaderLen || p+n > len(msg) {
			return h, templates, recs, fmt.Errorf("%w: set %d of length %d at %d", ErrFormat, id, n, p)
		}
		set := msg[p+SetHeaderLen : p+n]
		switch id {
		case TemplateSetID:
			if string(msg[p:p+n]) != string(want[:]) {
				return h, templates, recs, fmt.Errorf("%w: a template set that is not ours", ErrFormat)
			}
			templates = true
		case TemplateV4, TemplateV6:
			rl := RecordLenV4
			if id == TemplateV6 {
				rl = RecordLenV6
			}
			if len(set)%rl != 0 {
				return h, templates, recs, fmt.Errorf("%w: data set %d of %d bytes", ErrFormat, id, len(set))
			}
			for ; len(set) > 0; set = set[rl:] {
				recs = append(recs, decodeRecord(set[:rl], id == TemplateV6))
			}
		default:
			return h, templates, recs, fmt.Errorf("%w: unknown set %d", ErrFormat, id)
		}
		p += n
	}
	return h, templates, recs, nil
}

func decodeRecord(b []byte, v6 bool) Record {
	r := Record{V6: v6}
	p := 8
	if v6 {
		copy(r.Src[:], b[0:16])
		copy(r.Dst[:], b[16:32])
		p = 32
	} else {
		copy(r.Src[:4], b[0:4])
		copy(r.Dst[:4], b[4:8])
	}
	r.SrcPort = binary.BigEndian.Uint16(b[p:])
	r.DstPort = binary.BigEndian.Uint16(b[p+2:])
	r.Proto = b[p+4]
	r.VLAN = binary.BigEndian.Uint16(b[p+5:])
	r.Ingress = binary.BigEndian.Uint32(b[p+7:])
	r.Packets = binary.BigEndian.Uint64(b[p+11:])
	r.Octets = binary.BigEndian.Uint64(b[p+19:])
	r.Start = binary.BigEndian.Uint64(b[p+27:])
	r.End = binary.BigEndian.Uint64(b[p+35:])
	return r
}
