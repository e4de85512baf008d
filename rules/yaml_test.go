package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

const goodFile = `# steering rules
default: pass
malformed: drop
rules:
  - priority: 20
    name: web
    proto: tcp
    dst: 198.18.0.0/15
    dport: 80-88
    action: redirect
  - priority: 10
    iface: xdpb
    vlan: 100
    ethertype: ipv6
    proto: 17
    src: 2001:2::1
    sport: 53
    action: drop
  - priority: 30
    action: pass
`

func TestParseFile(t *testing.T) {
	set, lines, err := Parse("good.yaml", []byte(goodFile))
	if err != nil {
		t.Fatal(err)
	}
	if set.Default != ActionPass || set.Malformed != ActionDrop || len(set.Rules) != 3 {
		t.Fatalf("set %+v", set)
	}
	r := set.Rules[0]
	want := Rule{Priority: 10, Iface: "xdpb", Fields: FieldIfindex | FieldVLAN | FieldEtherType | FieldProto | FieldSrc | FieldSport,
		VLAN: 100, EtherType: 0x86dd, Proto: 17, Src: netip.MustParsePrefix("2001:2::1/128"), Sport: PortRange{53, 53}, Action: ActionDrop}
	if r != want {
		t.Fatalf("rule 10:\n got %+v\nwant %+v", r, want)
	}
	if r := set.Rules[1]; r.Name != "web" || r.Dport != (PortRange{80, 88}) || r.Dst != netip.MustParsePrefix("198.18.0.0/15") {
		t.Fatalf("rule 20: %+v", r)
	}
	if lines[20] != 5 || lines[10] != 11 {
		t.Fatalf("lines %v", lines)
	}
	// Format round-trips.
	again, _, err := Parse("formatted", []byte(Format(set)))
	if err != nil {
		t.Fatalf("%v\n%s", err, Format(set))
	}
	if fmt.Sprint(again) != fmt.Sprint(set) {
		t.Fatalf("round trip:\n%v\n%v", again, set)
	}
}

func TestParseErrors(t *testing.T) {
	many := &strings.Builder{}
	many.WriteString("rules:\n")
	for i := range MaxRules + 1 {
		fmt.Fprintf(many, "  - {priority: %d, action: drop}\n", i)
	}
	for _, tc := range []struct {
		name, file string
		line       int
		msg        string
	}{
		// yaml.v3 reports the line of the block the bad indentation breaks.
		{"syntax", "rules:\n  - priority: 1\n   action: drop\n", 1, "syntax error"},
		{"syntax-flow", "default: pass\nrules: [\n", 2, "syntax error"},
		{"tab", "rules:\n\t- priority: 1\n", 2, "syntax error"},
		{"unknown-top", "rulez: []\n", 1, `unknown field "rulez"`},
		{"unknown-field", "rules:\n  - priority: 1\n    action: drop\n    dstport: 53\n", 4, `unknown field "dstport"`},
		{"invalid-prefix", "rules:\n  - priority: 1\n    src: 198.18.0.0/33\n    action: drop\n", 3, "invalid prefix"},
		{"invalid-address", "rules:\n  - priority: 1\n    dst: 300.1.1.1\n    action: drop\n", 3, "invalid prefix"},
		{"backwards", "rules:\n  - priority: 1\n    dport: 2000-1000\n    action: drop\n", 3, "backwards"},
		{"bad-port", "rules:\n  - priority: 1\n    sport: 70000\n    action: drop\n", 3, "sport"},
		{"duplicate", "rules:\n  - priority: 1\n    action: drop\n  - priority: 2\n    action: drop\n  - priority: 1\n    action: pass\n", 6, "duplicate priority 1 (first used at line 2)"},
		{"no-priority", "rules:\n  - action: drop\n", 2, "without a priority"},
		{"no-action", "rules:\n  - priority: 4\n", 2, "without an action"},
		{"bad-action", "rules:\n  - priority: 4\n    action: forward\n", 3, "unknown action"},
		{"bad-default", "default: reject\n", 1, "unknown action"},
		{"vlan", "rules:\n  - priority: 4\n    vlan: 4096\n    action: drop\n", 3, "vlan"},
		{"families", "rules:\n  - priority: 4\n    src: 198.18.0.1\n    dst: 2001:2::1\n    action: drop\n", 2, "different address families"},
		{"too-many", many.String(), MaxRules + 2, "too many rules"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, _, err := Parse("r.yaml", []byte(tc.file))
			if err == nil {
				t.Fatalf("no error; set %v", set)
			}
			if set != nil {
				t.Error("a set returned with an error")
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v is no *Error", err, err)
			}
			if e.File != "r.yaml" || e.Line != tc.line || !strings.Contains(e.Msg, tc.msg) {
				t.Fatalf("got %q, want r.yaml:%d: ...%s...", err, tc.line, tc.msg)
			}
			t.Log(err)
		})
	}
}
