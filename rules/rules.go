// Package rules is xdpipe's steering match language: the rule model, its
// YAML form, the one compiler to bitmap tables and a reference matcher.
//
// The XDP steering program (package bpf, steer.c) implements exactly these
// semantics in the kernel; Set.Match, a linear scan, is the specification
// it is fuzzed against. Compile turns a Set into Tables, the bit-vector
// scheme's bitmaps: package bpf writes them into the program's maps, and
// NewMatcher runs them in Go (what the pipeline's filter stage uses; its
// cost per frame does not grow with the number of rules, see
// BenchmarkMatcher). Frames are parsed by xdpipe's one frame parser
// (internal/frame), which has the steering program's limits. The package
// is pure Go with no dependency beyond the standard library and yaml.v3;
// ParseFrame, Set.Match and Matcher.Match allocate nothing.
//
// # Semantics
//
// A frame is parsed into a Tuple (see ParseFrame for what each field holds
// and which frames are malformed). A malformed frame takes Set.Malformed.
// Otherwise the rules are tried in ascending Priority (lower numbers first;
// priorities are unique) and the first rule that matches decides; with no
// match, Set.Default applies. A rule matches when every field it sets
// matches; unset fields match anything:
//
//   - Ifindex: the ingress interface index.
//   - VLAN: the VLAN id of the outermost tag; untagged frames never match.
//   - EtherType: the EtherType after all VLAN tags (0x0800 for IPv4 in
//     802.1Q), so a rule on 0x8100 never matches.
//   - Proto: the IP protocol (IPv4) or the upper-layer header after the
//     extension chain (IPv6); non-IP frames never match.
//   - Src, Dst: prefix contains the address; an IPv4 prefix never matches an
//     IPv6 frame nor the reverse; non-IP frames never match.
//   - Sport, Dport: the range contains the port. Only TCP and UDP frames
//     that are not non-first fragments have ports; others never match (a
//     non-first fragment matches on addresses and protocol only).
package rules

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// MaxRules is the most rules a Set may hold: the size of the steering
// program's rule bitmaps.
const MaxRules = 16384

// MaxNameLen is the longest rule name, in bytes.
const MaxNameLen = 31

// Action is what happens to a frame.
type Action uint8

const (
	// ActionPass hands the frame to the kernel network stack.
	ActionPass Action = iota
	// ActionDrop drops the frame.
	ActionDrop
	// ActionRedirect sends the frame to the AF_XDP socket of its RX queue
	// (to the kernel stack when no socket is registered there).
	ActionRedirect
)

// String returns pass, drop or redirect.
func (a Action) String() string {
	switch a {
	case ActionPass:
		return "pass"
	case ActionDrop:
		return "drop"
	case ActionRedirect:
		return "redirect"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// ParseAction parses pass, drop or redirect.
func ParseAction(s string) (Action, error) {
	switch s {
	case "pass":
		return ActionPass, nil
	case "drop":
		return ActionDrop, nil
	case "redirect", "xsk":
		return ActionRedirect, nil
	}
	return 0, fmt.Errorf("unknown action %q (want pass, drop or redirect)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *Action) UnmarshalText(b []byte) error {
	v, err := ParseAction(string(b))
	if err == nil {
		*a = v
	}
	return err
}

// Field is a set of match fields, one bit each.
type Field uint32

const (
	FieldIfindex Field = 1 << iota
	FieldVLAN
	FieldEtherType
	FieldProto
	FieldSrc
	FieldDst
	FieldSport
	FieldDport
	// FieldAll is every field.
	FieldAll = FieldIfindex | FieldVLAN | FieldEtherType | FieldProto | FieldSrc | FieldDst | FieldSport | FieldDport
)

// PortRange is an inclusive range of ports; Lo == Hi for a single port.
type PortRange struct {
	Lo, Hi uint16
}

// Contains reports whether p is in the range.
func (r PortRange) Contains(p uint16) bool { return r.Lo <= p && p <= r.Hi }

// String returns "80" or "1000-2000".
func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// Rule is one steering rule. Only the fields whose bit is set in Fields
// take part in matching.
type Rule struct {
	// Priority orders the rules: lower first. Unique within a Set.
	Priority uint32 `json:"priority"`
	// Name is an optional label (at most MaxNameLen bytes).
	Name   string `json:"name,omitempty"`
	Fields Field  `json:"-"`
	// Iface is the interface name the rule was written with; the loader
	// resolves it into Ifindex (see Set.ResolveIfaces).
	Iface     string       `json:"iface,omitempty"`
	Ifindex   uint32       `json:"ifindex,omitempty"`
	VLAN      uint16       `json:"vlan,omitempty"`
	EtherType uint16       `json:"ethertype,omitempty"`
	Proto     uint8        `json:"proto,omitempty"`
	Src       netip.Prefix `json:"src,omitzero"`
	Dst       netip.Prefix `json:"dst,omitzero"`
	Sport     PortRange    `json:"sport,omitzero"`
	Dport     PortRange    `json:"dport,omitzero"`
	Action    Action       `json:"action"`
}

// Match reports whether the rule matches t.
func (r *Rule) Match(t *Tuple) bool {
	f := r.Fields
	if f&FieldIfindex != 0 && t.Ifindex != r.Ifindex {
		return false
	}
	if f&FieldVLAN != 0 && (!t.HasVLAN || t.VLAN != r.VLAN) {
		return false
	}
	if f&FieldEtherType != 0 && t.EtherType != r.EtherType {
		return false
	}
	if f&FieldProto != 0 && (t.Family == 0 || t.Proto != r.Proto) {
		return false
	}
	if f&FieldSrc != 0 && (t.Family == 0 || !r.Src.Contains(t.Src)) {
		return false
	}
	if f&FieldDst != 0 && (t.Family == 0 || !r.Dst.Contains(t.Dst)) {
		return false
	}
	if f&FieldSport != 0 && (!t.HasPorts || !r.Sport.Contains(t.Sport)) {
		return false
	}
	if f&FieldDport != 0 && (!t.HasPorts || !r.Dport.Contains(t.Dport)) {
		return false
	}
	return true
}

// String formats the rule on one line, in the YAML field names.
func (r *Rule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "priority %d", r.Priority)
	if r.Name != "" {
		fmt.Fprintf(&b, " name %s", r.Name)
	}
	b.WriteString(" " + r.MatchString())
	fmt.Fprintf(&b, " action %s", r.Action)
	return b.String()
}

// MatchString formats the match fields, or "any".
func (r *Rule) MatchString() string {
	var parts []string
	f := r.Fields
	if f&FieldIfindex != 0 {
		if r.Iface != "" {
			parts = append(parts, "iface "+r.Iface)
		} else {
			parts = append(parts, fmt.Sprintf("ifindex %d", r.Ifindex))
		}
	}
	if f&FieldVLAN != 0 {
		parts = append(parts, fmt.Sprintf("vlan %d", r.VLAN))
	}
	if f&FieldEtherType != 0 {
		parts = append(parts, "ethertype "+EtherTypeName(r.EtherType))
	}
	if f&FieldProto != 0 {
		parts = append(parts, "proto "+ProtoName(r.Proto))
	}
	if f&FieldSrc != 0 {
		parts = append(parts, "src "+r.Src.String())
	}
	if f&FieldDst != 0 {
		parts = append(parts, "dst "+r.Dst.String())
	}
	if f&FieldSport != 0 {
		parts = append(parts, "sport "+r.Sport.String())
	}
	if f&FieldDport != 0 {
		parts = append(parts, "dport "+r.Dport.String())
	}
	if len(parts) == 0 {
		return "any"
	}
	return strings.Join(parts, " ")
}

// Set is a complete rule set: what the steering program applies at once.
type Set struct {
	// Default is the action when no rule matches (zero value: pass).
	Default Action `json:"default"`
	// Malformed is the action for frames that cannot be parsed.
	Malformed Action `json:"malformed"`
	// Rules, sorted by Priority by Normalize.
	Rules []Rule `json:"rules"`
}

// Normalize validates the set and sorts its rules by priority: unique
// priorities, at most MaxRules rules, ranges not backwards, prefixes
// canonical (masked), names short enough.
func (s *Set) Normalize() error {
	if len(s.Rules) > MaxRules {
		return fmt.Errorf("%d rules: the steering maps hold at most %d", len(s.Rules), MaxRules)
	}
	slices.SortStableFunc(s.Rules, func(a, b Rule) int { return cmp.Compare(a.Priority, b.Priority) })
	for i := range s.Rules {
		r := &s.Rules[i]
		if i > 0 && s.Rules[i-1].Priority == r.Priority {
			return fmt.Errorf("duplicate priority %d", r.Priority)
		}
		if err := r.validate(); err != nil {
			return fmt.Errorf("rule priority %d: %w", r.Priority, err)
		}
	}
	for _, a := range []Action{s.Default, s.Malformed} {
		if a > ActionRedirect {
			return fmt.Errorf("invalid action %v", a)
		}
	}
	return nil
}

func (r *Rule) validate() error {
	if len(r.Name) > MaxNameLen {
		return fmt.Errorf("name %q longer than %d bytes", r.Name, MaxNameLen)
	}
	if r.Action > ActionRedirect {
		return fmt.Errorf("invalid action %v", r.Action)
	}
	if r.Fields&^FieldAll != 0 {
		return fmt.Errorf("unknown field bits %#x", uint32(r.Fields&^FieldAll))
	}
	if r.Fields&FieldVLAN != 0 && r.VLAN > 4095 {
		return fmt.Errorf("vlan %d out of range 0..4095", r.VLAN)
	}
	for _, p := range []struct {
		f    Field
		name string
		p    *netip.Prefix
	}{{FieldSrc, "src", &r.Src}, {FieldDst, "dst", &r.Dst}} {
		if r.Fields&p.f == 0 {
			continue
		}
		if !p.p.IsValid() {
			return fmt.Errorf("%s: invalid prefix", p.name)
		}
		if p.p.Addr().Zone() != "" {
			return fmt.Errorf("%s: prefix with a zone", p.name)
		}
		*p.p = p.p.Masked()
	}
	if r.Fields&FieldSrc != 0 && r.Fields&FieldDst != 0 && r.Src.Addr().Is4() != r.Dst.Addr().Is4() {
		return errors.New("src and dst prefixes of different address families never match")
	}
	for _, p := range []struct {
		f    Field
		name string
		r    PortRange
	}{{FieldSport, "sport", r.Sport}, {FieldDport, "dport", r.Dport}} {
		if r.Fields&p.f != 0 && p.r.Lo > p.r.Hi {
			return fmt.Errorf("%s range %d-%d is backwards", p.name, p.r.Lo, p.r.Hi)
		}
	}
	return nil
}

// ResolveIfaces sets Ifindex of every rule written with an interface name,
// using lookup (net.InterfaceByName's index, typically).
func (s *Set) ResolveIfaces(lookup func(name string) (int, error)) error {
	for i := range s.Rules {
		r := &s.Rules[i]
		if r.Iface == "" {
			continue
		}
		idx, err := lookup(r.Iface)
		if err != nil {
			return fmt.Errorf("rule priority %d: interface %q: %w", r.Priority, r.Iface, err)
		}
		r.Ifindex = uint32(idx)
		r.Fields |= FieldIfindex
	}
	return nil
}

// Match returns the index in s.Rules of the first rule (in order) matching
// t and its action, or -1 and s.Default. The rules must be sorted by
// priority (Normalize). It is the reference: a linear scan.
func (s *Set) Match(t *Tuple) (int, Action) {
	for i := range s.Rules {
		if s.Rules[i].Match(t) {
			return i, s.Rules[i].Action
		}
	}
	return -1, s.Default
}

// Decision is the outcome for one frame.
type Decision struct {
	Action Action
	// Rule is the index of the matching rule, or -1.
	Rule int
	// Reason is why the frame is malformed, or ReasonNone.
	Reason Reason
}

// Decide parses frame as received on ifindex and returns what the steering
// program does with it.
func (s *Set) Decide(frame []byte, ifindex uint32) Decision {
	t, reason := ParseFrame(frame, ifindex)
	if reason != ReasonNone {
		return Decision{Action: s.Malformed, Rule: -1, Reason: reason}
	}
	i, a := s.Match(&t)
	return Decision{Action: a, Rule: i}
}

var etherTypes = map[string]uint16{"ipv4": 0x0800, "ipv6": 0x86dd, "arp": 0x0806, "vlan": 0x8100, "qinq": 0x88a8, "lldp": 0x88cc}

var protos = map[string]uint8{"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51, "icmpv6": 58, "sctp": 132}

// EtherTypeName returns ipv4, ipv6, arp... or 0x hex.
func EtherTypeName(t uint16) string {
	for n, v := range etherTypes {
		if v == t && n != "vlan" && n != "qinq" {
			return n
		}
	}
	return fmt.Sprintf("0x%04x", t)
}

// ProtoName returns tcp, udp, icmp... or the number.
func ProtoName(p uint8) string {
	for n, v := range protos {
		if v == p {
			return n
		}
	}
	return strconv.Itoa(int(p))
}
