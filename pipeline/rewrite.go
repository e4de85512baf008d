package pipeline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/xdpipe/xdpipe/internal/frame"
)

// Rewrite edits headers in place, in this order: VLAN pop, VLAN push, MAC
// addresses, TTL (IPv6: hop limit), DSCP (IPv6: in the traffic class). The
// IPv4 header checksum is updated incrementally (RFC 1624, eqn. 3), never
// recomputed; IPv6 has none, and neither field is in the UDP or TCP
// pseudo-header. The zero value changes nothing.
type Rewrite struct {
	// SrcMAC and DstMAC replace the Ethernet addresses when non-nil.
	SrcMAC, DstMAC net.HardwareAddr
	// PopVLAN removes the outer 802.1Q/802.1ad tag, if any.
	PopVLAN bool
	// PushVLAN inserts an outer 802.1Q tag with TCI VLANTCI (PCP<<13 |
	// DEI<<12 | VID), using 4 bytes of the frame's headroom (or tailroom).
	PushVLAN bool
	VLANTCI  uint16
	// DecTTL decrements the IPv4 TTL or IPv6 hop limit; a packet whose TTL
	// would reach 0 is dropped (as a router would). SetTTL, if non-zero,
	// sets it instead.
	DecTTL bool
	SetTTL uint8
	// SetDSCP sets the DSCP to DSCP (0..63), keeping ECN: the top six bits
	// of the IPv4 TOS or of the IPv6 traffic class.
	SetDSCP bool
	DSCP    uint8

	// NoRoom counts frames whose VLAN push found no room (left untagged);
	// TTLExpired counts drops by DecTTL.
	NoRoom, TTLExpired atomic.Uint64
}

var (
	_ Stage   = (*Rewrite)(nil)
	_ Metered = (*Rewrite)(nil)
)

// Validate checks the settings.
func (r *Rewrite) Validate() error {
	if r.SrcMAC != nil && len(r.SrcMAC) != 6 || r.DstMAC != nil && len(r.DstMAC) != 6 {
		return fmt.Errorf("rewrite: MAC addresses must be 6 bytes")
	}
	if r.DSCP > 63 {
		return fmt.Errorf("rewrite: dscp %d: want 0..63", r.DSCP)
	}
	if r.PushVLAN && r.VLANTCI&0x0fff == 0x0fff {
		return fmt.Errorf("rewrite: VLAN ID 4095 is reserved")
	}
	return nil
}

// StageName implements Named.
func (*Rewrite) StageName() string { return "rewrite" }

// Counters implements Metered.
func (r *Rewrite) Counters(emit func(d *CounterDesc, v uint64, labels ...string)) {
	emit(mStageLost, r.NoRoom.Load()+r.TTLExpired.Load())
}

// RewriteOptions are the rewrite stage's options in a configuration file;
// unset ones change nothing.
type RewriteOptions struct {
	SrcMAC string `yaml:"src_mac"`
	DstMAC string `yaml:"dst_mac"`
	// PushVLAN is the VLAN ID (1..4094) of a tag to push, PCP its priority.
	PushVLAN *int `yaml:"push_vlan"`
	PCP      int  `yaml:"pcp"`
	PopVLAN  bool `yaml:"pop_vlan"`
	DecTTL   bool `yaml:"dec_ttl"`
	// TTL sets the TTL (hop limit): 1..255.
	TTL  *int `yaml:"ttl"`
	DSCP *int `yaml:"dscp"`
}

// inRange checks one integer option.
func inRange(name string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("%s %d: want %d..%d", name, v, lo, hi)
	}
	return nil
}

func newRewriteStage(o *RewriteOptions, _ StageEnv) (Stage, error) {
	rw := &Rewrite{PopVLAN: o.PopVLAN, DecTTL: o.DecTTL}
	var err error
	if o.SrcMAC != "" {
		if rw.SrcMAC, err = net.ParseMAC(o.SrcMAC); err != nil {
			return nil, fmt.Errorf("src_mac: %w", err)
		}
	}
	if o.DstMAC != "" {
		if rw.DstMAC, err = net.ParseMAC(o.DstMAC); err != nil {
			return nil, fmt.Errorf("dst_mac: %w", err)
		}
	}
	if o.PushVLAN != nil {
		if err := errors.Join(inRange("push_vlan", *o.PushVLAN, 1, 4094), inRange("pcp", o.PCP, 0, 7)); err != nil {
			return nil, err
		}
		rw.PushVLAN, rw.VLANTCI = true, uint16(o.PCP)<<13|uint16(*o.PushVLAN)
	}
	if o.TTL != nil {
		if err := inRange("ttl", *o.TTL, 1, 255); err != nil {
			return nil, err
		}
		rw.SetTTL = uint8(*o.TTL)
	}
	if o.DSCP != nil {
		if err := inRange("dscp", *o.DSCP, 0, 63); err != nil {
			return nil, err
		}
		rw.SetDSCP, rw.DSCP = true, uint8(*o.DSCP)
	}
	return rw, rw.Validate()
}

// Process implements Stage.
func (r *Rewrite) Process(b *Burst) {
	var noRoom, expired uint64
	for i := range b.Pkts {
		p := &b.Pkts[i]
		if p.Verdict == VerdictDrop || len(p.Data) < frame.EthLen {
			continue
		}
		if r.PopVLAN {
			popVLAN(p)
		}
		if r.PushVLAN && !pushVLAN(p, r.VLANTCI) {
			noRoom++
		}
		if r.DstMAC != nil {
			copy(p.Data[0:6], r.DstMAC)
		}
		if r.SrcMAC != nil {
			copy(p.Data[6:12], r.SrcMAC)
		}
		if r.DecTTL || r.SetTTL != 0 || r.SetDSCP {
			ip, v6 := ipHeader(p.Data)
			if ip == nil {
				continue
			}
			ttlAt := 8 // IPv4 TTL; IPv6 hop limit is byte 7
			if v6 {
				ttlAt = 7
			}
			if r.SetTTL != 0 || r.DecTTL {
				ttl := ip[ttlAt]
				nttl := r.SetTTL
				if r.DecTTL {
					if ttl <= 1 {
						p.Verdict = VerdictDrop
						expired++
						continue
					}
					nttl = ttl - 1
				}
				if v6 {
					ip[ttlAt] = nttl
				} else {
					setIPv4Byte(ip, ttlAt, nttl)
				}
			}
			if r.SetDSCP {
				if v6 {
					// Version(4) | traffic class(8) | flow label(20):
					// the DSCP is bits 2..7 of the first two bytes.
					ip[0] = ip[0]&0xf0 | r.DSCP>>2
					ip[1] = (r.DSCP&3)<<6 | ip[1]&0x3f
				} else {
					setIPv4Byte(ip, 1, r.DSCP<<2|ip[1]&3)
				}
			}
		}
	}
	if noRoom != 0 {
		r.NoRoom.Add(noRoom)
	}
	if expired != 0 {
		r.TTLExpired.Add(expired)
	}
}

// ipHeader returns the IP header of an Ethernet frame behind any number of
// VLAN tags (a push makes a QinQ frame three deep, more than frame.Parse
// reads) and whether it is IPv6, or nil.
func ipHeader(d []byte) (ip []byte, v6 bool) {
	off := frame.EthLen
	et := binary.BigEndian.Uint16(d[12:14])
	for et == frame.EtherTypeVLAN || et == frame.EtherTypeQinQ {
		if len(d) < off+frame.VLANLen {
			return nil, false
		}
		et = binary.BigEndian.Uint16(d[off+2 : off+4])
		off += frame.VLANLen
	}
	switch {
	case et == frame.EtherTypeIPv4 && len(d) >= off+frame.IPv4MinLen && d[off]>>4 == 4:
		return d[off:], false
	case et == frame.EtherTypeIPv6 && len(d) >= off+frame.IPv6Len && d[off]>>4 == 6:
		return d[off:], true
	}
	return nil, false
}

// setIPv4Byte sets byte i of an IPv4 header and updates the header checksum
// incrementally: HC' = ~(~HC + ~m + m') over the 16-bit word holding the
// byte (RFC 1624, eqn. 3).
func setIPv4Byte(ip []byte, i int, v byte) {
	w := i &^ 1
	old := binary.BigEndian.Uint16(ip[w : w+2])
	// The new word is computed, not read back after the byte store: a
	// 16-bit load of a just-written byte stalls store forwarding.
	nw := old&0x00ff | uint16(v)<<8
	if i&1 == 1 {
		nw = old&0xff00 | uint16(v)
	}
	ip[i] = v
	sum := binary.BigEndian.Uint16(ip[10:12])
	binary.BigEndian.PutUint16(ip[10:12], csumUpdate16(sum, old, nw))
}

// csumUpdate16 is RFC 1624 eqn. 3 for one 16-bit word changing from old to new.
func csumUpdate16(sum, old, new uint16) uint16 {
	s := uint32(^sum) + uint32(^old) + uint32(new)
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	return ^uint16(s)
}

// popVLAN removes the outer VLAN tag by moving the MAC addresses 4 bytes
// forward (the frame start moves; nothing else is copied).
func popVLAN(p *Packet) {
	d := p.Data
	et := binary.BigEndian.Uint16(d[12:14])
	if et != frame.EtherTypeVLAN && et != frame.EtherTypeQinQ || len(d) < frame.EthLen+frame.VLANLen {
		return
	}
	copy(d[4:16], d[0:12])
	p.Resize(frame.VLANLen, len(d)-frame.VLANLen)
}

// pushVLAN inserts an 802.1Q tag after the MAC addresses, moving the
// addresses 4 bytes back into the headroom, or when there is none the rest
// of the frame 4 bytes into the tailroom.
func pushVLAN(p *Packet, tci uint16) bool {
	n := len(p.Data)
	if p.Resize(-frame.VLANLen, n+frame.VLANLen) {
		copy(p.Data[0:12], p.Data[4:16])
	} else if p.Resize(0, n+frame.VLANLen) {
		copy(p.Data[16:], p.Data[12:n])
	} else {
		return false
	}
	binary.BigEndian.PutUint16(p.Data[12:14], frame.EtherTypeVLAN)
	binary.BigEndian.PutUint16(p.Data[14:16], tci)
	return true
}
