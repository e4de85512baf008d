package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is a problem in a rules file, with its position.
type Error struct {
	File string
	Line int // 1-based; 0 when unknown
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// ErrorList is every problem found in a rules file. It unwraps to its
// *Error elements.
type ErrorList []*Error

func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the individual errors.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// Lines maps rule priority to the line its rule starts on, for error
// messages about rules after parsing.
type Lines map[uint32]int

// LoadFile reads and parses a rules file; see Parse.
func LoadFile(path string) (*Set, Lines, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return Parse(path, b)
}

var yamlLine = regexp.MustCompile(`line (\d+): (.*)`)

// Parse parses a rules file in YAML:
//
//	default: pass        # no rule matched: pass (the default), drop, redirect
//	malformed: drop      # frames that cannot be parsed (default pass)
//	rules:
//	  - priority: 10     # required, unique; lower goes first
//	    name: dns        # optional
//	    iface: eth0      # or ifindex: 3
//	    vlan: 100
//	    ethertype: ipv4  # ipv4, ipv6, arp, lldp or a number (0x88cc)
//	    proto: udp       # tcp, udp, icmp, icmpv6, sctp... or a number
//	    src: 198.18.0.0/15   # a prefix, or an address (/32, /128)
//	    dst: 2001:2::/48
//	    sport: 53
//	    dport: 1000-2000
//	    action: redirect # required: redirect, pass or drop
//
// Errors carry name, the line and the reason; all problems are reported,
// and on any error no Set is returned. The Set is normalized (sorted).
func Parse(name string, data []byte) (*Set, Lines, error) {
	var errs ErrorList
	fail := func(line int, format string, args ...any) {
		errs = append(errs, &Error{File: name, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		line := 0
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		fail(line, "syntax error: %s", msg)
		return nil, nil, errs
	}
	set := &Set{}
	lines := Lines{}
	if len(doc.Content) == 0 {
		return set, lines, nil // empty file: no rules
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		fail(top.Line, "expected a mapping with default, malformed and rules")
		return nil, nil, errs
	}
	first := map[uint32]int{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		switch k.Value {
		case "default", "malformed":
			a, err := ParseAction(v.Value)
			if err != nil || v.Kind != yaml.ScalarNode {
				fail(v.Line, "%s: unknown action %q (want pass, drop or redirect)", k.Value, v.Value)
			}
			if k.Value == "default" {
				set.Default = a
			} else {
				set.Malformed = a
			}
		case "rules":
			if v.Kind != yaml.SequenceNode {
				if v.Tag == "!!null" {
					continue
				}
				fail(v.Line, "rules: expected a list of rules")
				continue
			}
			if len(v.Content) > MaxRules {
				fail(v.Content[MaxRules].Line, "too many rules: %d, the steering maps hold at most %d", len(v.Content), MaxRules)
				return nil, nil, errs
			}
			for _, rn := range v.Content {
				r, ok := parseRule(rn, fail)
				if !ok {
					continue
				}
				if l, dup := first[r.Priority]; dup {
					fail(rn.Line, "duplicate priority %d (first used at line %d)", r.Priority, l)
					continue
				}
				first[r.Priority] = rn.Line
				lines[r.Priority] = rn.Line
				set.Rules = append(set.Rules, r)
			}
		default:
			fail(k.Line, "unknown field %q (want default, malformed or rules)", k.Value)
		}
	}
	if len(errs) > 0 {
		return nil, nil, errs
	}
	if err := set.Normalize(); err != nil {
		fail(0, "%v", err)
		return nil, nil, errs
	}
	return set, lines, nil
}

func parseRule(n *yaml.Node, fail func(int, string, ...any)) (Rule, bool) {
	var r Rule
	if n.Kind != yaml.MappingNode {
		fail(n.Line, "a rule must be a mapping of fields")
		return r, false
	}
	ok := true
	bad := func(line int, format string, args ...any) {
		fail(line, format, args...)
		ok = false
	}
	var hasPrio, hasAction bool
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			bad(v.Line, "%s: expected a single value", k.Value)
			continue
		}
		s := v.Value
		switch k.Value {
		case "priority":
			p, err := strconv.ParseUint(s, 0, 32)
			if err != nil {
				bad(v.Line, "priority %q: want a number 0..4294967295", s)
			}
			r.Priority, hasPrio = uint32(p), true
		case "name":
			if len(s) > MaxNameLen {
				bad(v.Line, "name %q longer than %d bytes", s, MaxNameLen)
			}
			r.Name = s
		case "iface":
			if s == "" || len(s) > 15 || strings.ContainsAny(s, "/ ") {
				bad(v.Line, "iface %q: not an interface name", s)
			}
			r.Iface = s
			r.Fields |= FieldIfindex
		case "ifindex":
			x, err := strconv.ParseUint(s, 0, 32)
			if err != nil || x == 0 {
				bad(v.Line, "ifindex %q: want a positive number", s)
			}
			r.Ifindex = uint32(x)
			r.Fields |= FieldIfindex
		case "vlan":
			x, err := strconv.ParseUint(s, 0, 16)
			if err != nil || x > 4095 {
				bad(v.Line, "vlan %q: want a VLAN id 0..4095", s)
			}
			r.VLAN = uint16(x)
			r.Fields |= FieldVLAN
		case "ethertype":
			x, found := etherTypes[strings.ToLower(s)]
			if !found {
				y, err := strconv.ParseUint(s, 0, 16)
				if err != nil {
					bad(v.Line, "ethertype %q: want ipv4, ipv6, arp, lldp or a number like 0x88cc", s)
				}
				x = uint16(y)
			}
			r.EtherType = x
			r.Fields |= FieldEtherType
		case "proto":
			x, found := protos[strings.ToLower(s)]
			if !found {
				y, err := strconv.ParseUint(s, 0, 8)
				if err != nil {
					bad(v.Line, "proto %q: want tcp, udp, icmp, icmpv6 or a number 0..255", s)
				}
				x = uint8(y)
			}
			r.Proto = x
			r.Fields |= FieldProto
		case "src", "dst":
			p, err := parsePrefix(s)
			if err != nil {
				bad(v.Line, "%s: invalid prefix %q: %v", k.Value, s, err)
			}
			if k.Value == "src" {
				r.Src, r.Fields = p, r.Fields|FieldSrc
			} else {
				r.Dst, r.Fields = p, r.Fields|FieldDst
			}
		case "sport", "dport":
			pr, err := ParsePortRange(s)
			if err != nil {
				bad(v.Line, "%s: %v", k.Value, err)
			}
			if k.Value == "sport" {
				r.Sport, r.Fields = pr, r.Fields|FieldSport
			} else {
				r.Dport, r.Fields = pr, r.Fields|FieldDport
			}
		case "action":
			a, err := ParseAction(s)
			if err != nil {
				bad(v.Line, "%v", err)
			}
			r.Action, hasAction = a, true
		default:
			bad(k.Line, "unknown field %q in rule (want priority, name, iface, ifindex, vlan, ethertype, proto, src, dst, sport, dport, action)", k.Value)
		}
	}
	if !hasPrio {
		bad(n.Line, "rule without a priority")
	}
	if !hasAction {
		bad(n.Line, "rule without an action")
	}
	if ok && r.Fields&FieldSrc != 0 && r.Fields&FieldDst != 0 && r.Src.Addr().Is4() != r.Dst.Addr().Is4() {
		bad(n.Line, "src %s and dst %s are of different address families: the rule could never match", r.Src, r.Dst)
	}
	return r, ok
}

// parsePrefix parses a prefix, or a bare address as a full-length prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if a.Zone() != "" {
			return netip.Prefix{}, errors.New("zones are not allowed")
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, err
	}
	if p.Addr().Is4In6() {
		return p, errors.New("IPv4-mapped IPv6 prefixes are ambiguous: write the IPv4 prefix")
	}
	return p.Masked(), nil
}

// ParsePortRange parses "80" or "1000-2000".
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	a, err := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	if err != nil {
		return PortRange{}, fmt.Errorf("port %q: want a number 0..65535 or a range lo-hi", s)
	}
	b := a
	if isRange {
		if b, err = strconv.ParseUint(strings.TrimSpace(hi), 10, 16); err != nil {
			return PortRange{}, fmt.Errorf("port range %q: want lo-hi with numbers 0..65535", s)
		}
		if a > b {
			return PortRange{}, fmt.Errorf("port range %q is backwards (%d > %d)", s, a, b)
		}
	}
	return PortRange{Lo: uint16(a), Hi: uint16(b)}, nil
}

// Format writes the set in the file format Parse reads.
func Format(s *Set) string {
	var b strings.Builder
	fmt.Fprintf(&b, "default: %s\nmalformed: %s\nrules:\n", s.Default, s.Malformed)
	for _, r := range s.Rules {
		fmt.Fprintf(&b, "  - priority: %d\n", r.Priority)
		if r.Name != "" {
			fmt.Fprintf(&b, "    name: %q\n", r.Name)
		}
		f := r.Fields
		if f&FieldIfindex != 0 {
			if r.Iface != "" {
				fmt.Fprintf(&b, "    iface: %s\n", r.Iface)
			} else {
				fmt.Fprintf(&b, "    ifindex: %d\n", r.Ifindex)
			}
		}
		if f&FieldVLAN != 0 {
			fmt.Fprintf(&b, "    vlan: %d\n", r.VLAN)
		}
		if f&FieldEtherType != 0 {
			fmt.Fprintf(&b, "    ethertype: 0x%04x\n", r.EtherType)
		}
		if f&FieldProto != 0 {
			fmt.Fprintf(&b, "    proto: %d\n", r.Proto)
		}
		if f&FieldSrc != 0 {
			fmt.Fprintf(&b, "    src: %s\n", r.Src)
		}
		if f&FieldDst != 0 {
			fmt.Fprintf(&b, "    dst: %s\n", r.Dst)
		}
		if f&FieldSport != 0 {
			fmt.Fprintf(&b, "    sport: %q\n", r.Sport.String())
		}
		if f&FieldDport != 0 {
			fmt.Fprintf(&b, "    dport: %q\n", r.Dport.String())
		}
		fmt.Fprintf(&b, "    action: %s\n", r.Action)
	}
	return b.String()
}
