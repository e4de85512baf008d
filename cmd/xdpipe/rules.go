package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/internal/caps"
	"github.com/xdpipe/xdpipe/rdma"
	"github.com/xdpipe/xdpipe/rules"
)

const rulesUsage = `usage: xdpipe rules <subcommand> [flags] [args]

Changes the steering rules of a running xdpipe instance through its maps
pinned under --pin, without restarting it. Rule files are YAML (see
rules.Parse: default, malformed, rules with priority, match fields, action).

subcommands:
  list                 the running rules (--json for scripts)
  stats                per-rule packets and bytes, unmatched and malformed frames
  add FILE             add FILE's rules to the running set (priorities must be new)
  replace FILE         replace the running set, default and malformed actions by FILE's
  del PRIO|NAME...     delete rules by priority or name
  attach --iface IF    load the steering program, pin it under --pin-dir and attach
                       it to IF (stays attached after exit; --file F applies rules first)
  detach               remove the pins: detaches the program, frees its maps

Each interface's pins have a directory of their own under --pin-dir, named
by its network namespace and index (ns12-if3), so no other interface ever
shares them, whatever its name: --iface finds it from the name in this
network namespace, --pin names it from anywhere.

Pins must be on a bpffs the later commands see. 'ip netns exec' remounts
/sys, so a pin under /sys/fs/bpf made there vanishes with the command: use
--pin-dir on a bpffs mounted elsewhere (mount -t bpf bpffs DIR).

flags:
`

// runRules is the entry point of `xdpipe rules`.
func runRules(ctx context.Context, args []string) error {
	return rulesMain(args, os.Stdout, os.Stderr)
}

type rulesFlags struct {
	pin    string
	pinDir string
	json   bool
	iface  string
	mode   string
	file   string
}

// parseRulesFlags parses flags anywhere among args, returning positionals.
func parseRulesFlags(args []string, stderr io.Writer) (*rulesFlags, []string, error) {
	o := &rulesFlags{}
	fs := flag.NewFlagSet("rules", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.pin, "pin", "", "bpffs directory of the instance's pinned maps (default: --iface's under --pin-dir,\nor the only one of this network namespace's interfaces there)")
	fs.StringVar(&o.pinDir, "pin-dir", bpf.DefaultPinPath, "bpffs directory holding the instances' pin directories (run's --pin-dir)")
	fs.BoolVar(&o.json, "json", false, "print JSON instead of a table")
	fs.StringVar(&o.iface, "iface", "", "interface whose steering program to use (attach: to attach to)")
	fs.StringVar(&o.mode, "mode", "auto", "attach: XDP attach mode, driver, generic or auto")
	fs.StringVar(&o.file, "file", "", "attach: rules file to apply before attaching")
	fs.Usage = func() {
		fmt.Fprint(stderr, rulesUsage)
		fs.PrintDefaults()
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, nil, err
		}
		if fs.NArg() == 0 {
			return o, pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func rulesMain(args []string, stdout, stderr io.Writer) error {
	o, pos, err := parseRulesFlags(args, stderr)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fmt.Fprint(stderr, rulesUsage)
		return flag.ErrHelp
	}
	sub, pos := pos[0], pos[1:]
	if !slices.Contains([]string{"list", "stats", "add", "replace", "del", "attach", "detach"}, sub) {
		return fmt.Errorf("unknown subcommand %q (want list, stats, add, replace, del, attach or detach)", sub)
	}
	need, what := []caps.Cap{caps.BPF}, "read and change the steering maps pinned under "+bpf.DefaultPinPath
	switch sub {
	case "attach":
		need, what = []caps.Cap{caps.BPF, caps.NetAdmin, caps.Perfmon}, "load, pin and attach the steering program"
	case "detach":
		what = "remove the steering program's pins"
	}
	if err := caps.Check(what, need...); err != nil {
		return err
	}
	if sub == "attach" {
		if o.pin != "" {
			return errors.New("attach: --pin is not taken: attach pins in the interface's own directory under --pin-dir")
		}
		return rulesAttach(o, stdout)
	}
	if o.pin == "" {
		if o.pin, err = resolvePin(o.iface, o.pinDir); err != nil {
			return err
		}
	}
	if sub == "detach" {
		return rulesDetach(o, stdout)
	}
	s, err := bpf.OpenPinnedSteer(o.pin)
	if errors.Is(err, bpf.ErrNotRunning) {
		return fmt.Errorf("%w (start xdpipe with rule pinning, or check --pin)", err)
	} else if err != nil {
		return err
	}
	defer s.Close()
	if used, err := s.InUse(); err != nil {
		return err
	} else if !used {
		return fmt.Errorf("%w: no program uses the rules pinned under %s: the instance that pinned them is gone; "+
			"start xdpipe run again (it takes them over) or remove them with `xdpipe rules detach --pin %s`", bpf.ErrNotRunning, o.pin, o.pin)
	}
	switch sub {
	case "list":
		set, err := s.Rules()
		if err != nil {
			return err
		}
		return printRules(stdout, set, nil, nil, o.json)
	case "stats":
		set, err := s.Rules()
		if err != nil {
			return err
		}
		rs, err := s.RuleStats()
		if err != nil {
			return err
		}
		st, err := s.Stats()
		if err != nil {
			return err
		}
		return printRules(stdout, set, rs, &st, o.json)
	case "add", "replace":
		if len(pos) != 1 {
			return fmt.Errorf("%s: want one rules file", sub)
		}
		return rulesAddReplace(s, sub, pos[0], stdout)
	case "del":
		if len(pos) == 0 {
			return errors.New("del: want the priorities or names of the rules to delete")
		}
		return rulesDel(s, pos, stdout)
	}
	return nil
}

// resolvePin finds the pin directory when --pin is not given: interface
// iface's under base (the name resolved in this network namespace), else
// the only one under base of an interface of this network namespace.
func resolvePin(iface, base string) (string, error) {
	if iface != "" {
		id, err := bpf.LookupIface(iface)
		if err != nil {
			return "", err
		}
		return bpf.PinPathFor(base, id), nil
	}
	ns, err := bpf.Netns()
	if err != nil {
		return "", err
	}
	var dirs, names []string
	for _, d := range bpf.PinnedSteers(base) {
		id, ok := bpf.ParseIfaceID(filepath.Base(d))
		if !ok || id.Netns != ns {
			continue
		}
		name := filepath.Base(d)
		if ifc, err := net.InterfaceByIndex(id.Ifindex); err == nil {
			name = ifc.Name
		}
		dirs, names = append(dirs, d), append(names, name)
	}
	switch len(dirs) {
	case 0:
		return "", fmt.Errorf("%w: no steering maps pinned under %s for an interface of this network namespace (start one with `xdpipe rules attach --iface IF`, or name the directory with --pin)",
			bpf.ErrNotRunning, base)
	case 1:
		return dirs[0], nil
	}
	return "", fmt.Errorf("instances for several interfaces are pinned under %s (%s): pick one with --iface", base, strings.Join(names, ", "))
}

func rulesAttach(o *rulesFlags, stdout io.Writer) error {
	if o.iface == "" {
		return errors.New("attach: --iface is required")
	}
	mode, err := bpf.ParseAttachMode(o.mode)
	if err != nil {
		return err
	}
	ifc, err := net.InterfaceByName(o.iface)
	if err != nil {
		return fmt.Errorf("attach: interface %q: %w", o.iface, err)
	}
	var set *rules.Set
	if o.file != "" {
		if set, _, err = rules.LoadFile(o.file); err != nil {
			return err
		}
	}
	// Before the pins are touched: a running instance is not to be
	// hijacked; an earlier rules attach is replaced.
	claim, err := bpf.ClaimInterface(ifc.Index, bpf.ClaimOptions{Name: ifc.Name, PinDir: o.pinDir, Replace: true})
	if err != nil {
		return err
	}
	defer claim.Release()
	pin := claim.PinPath()
	_, err = os.Stat(pin)
	fresh := errors.Is(err, os.ErrNotExist)
	got, err := attachPinned(pin, ifc.Index, mode, set)
	if err != nil {
		if fresh {
			_ = bpf.RemovePins(pin) // what this attach pinned
		}
		return err
	}
	if err := claim.SetPinned(true); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "steering program attached to %s in %s mode, pinned under %s (xdpipe rules detach --iface %[1]s removes it)\n", o.iface, got, pin)
	return nil
}

// attachPinned loads the steering program pinned under pin, applies set
// (if any) and attaches it, its link pinned too.
func attachPinned(pin string, ifindex int, mode bpf.AttachMode, set *rules.Set) (bpf.AttachMode, error) {
	s, err := bpf.LoadSteer(bpf.SteerOptions{PinPath: pin})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	if set != nil {
		if err := s.Apply(set); err != nil {
			return 0, err
		}
	}
	return s.Attach(ifindex, mode)
}

// rulesDetach removes a pinned steering program (rules attach), and
// refuses to take a running instance's pins from under it.
func rulesDetach(o *rulesFlags, stdout io.Writer) error {
	if _, err := os.Stat(o.pin); err != nil {
		return fmt.Errorf("%w: nothing pinned under %s", bpf.ErrNotRunning, o.pin)
	}
	claim, err := bpf.ClaimPinned(o.pin, bpf.ClaimOptions{Replace: true})
	if err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	if claim != nil { // nil: no owner on record (pins of an earlier layout)
		defer claim.Release()
	}
	if err := bpf.RemovePins(o.pin); err != nil {
		return err
	}
	if claim != nil {
		if err := claim.SetPinned(false); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "removed the pins under %s: the steering program is detached once no process holds it\n", o.pin)
	return nil
}

// explain adds to err what the user can do about it with a command or a
// flag of this binary: the libraries' errors say only what is wrong.
func explain(err error) error {
	if pe := (*bpf.PinnedError)(nil); errors.As(err, &pe) {
		return fmt.Errorf("%w; remove it with `xdpipe rules detach --pin %s`", err, pe.Pin)
	}
	switch {
	case errors.Is(err, bpf.ErrPinsGone):
		return fmt.Errorf("%w: restart xdpipe to pin them again and change them", err)
	case errors.Is(err, bpf.ErrPinDirUnsafe):
		return fmt.Errorf("%w, or choose another --pin-dir", err)
	case errors.Is(err, rdma.ErrBufferSize):
		return fmt.Errorf("%w: raise the sink's buffer size (xdpipe rdma-sink --buffer-size)", err)
	}
	return err
}

func rulesAddReplace(s *bpf.Steer, sub, file string, stdout io.Writer) error {
	set, lines, err := rules.LoadFile(file)
	if err != nil {
		return err
	}
	if sub == "add" {
		cur, err := s.Rules()
		if err != nil {
			return err
		}
		have := map[uint32]rules.Rule{}
		for _, r := range cur.Rules {
			have[r.Priority] = r
		}
		var errs rules.ErrorList
		for _, r := range set.Rules {
			if old, dup := have[r.Priority]; dup {
				errs = append(errs, &rules.Error{File: file, Line: lines[r.Priority],
					Msg: fmt.Sprintf("priority %d is already used by running rule %s (del it first, or use replace)", r.Priority, old.String())})
			}
		}
		if len(errs) > 0 {
			return errs
		}
		if len(cur.Rules)+len(set.Rules) > rules.MaxRules {
			return &rules.Error{File: file, Msg: fmt.Sprintf("%d running rules + %d new exceed the maximum of %d", len(cur.Rules), len(set.Rules), rules.MaxRules)}
		}
		cur.Rules = append(cur.Rules, set.Rules...)
		set = cur
	}
	if err := s.Apply(set); err != nil {
		return fmt.Errorf("%s: %w (running rules unchanged)", file, err)
	}
	fmt.Fprintf(stdout, "%d rules running\n", len(set.Rules))
	return nil
}

func rulesDel(s *bpf.Steer, which []string, stdout io.Writer) error {
	cur, err := s.Rules()
	if err != nil {
		return err
	}
	del := map[int]bool{}
	for _, w := range which {
		found := false
		p, perr := strconv.ParseUint(w, 10, 32)
		for i, r := range cur.Rules {
			if (perr == nil && r.Priority == uint32(p)) || (r.Name != "" && r.Name == w) {
				del[i] = true
				found = true
			}
		}
		if !found {
			return fmt.Errorf("del: no running rule with priority or name %q (nothing deleted)", w)
		}
	}
	kept := cur.Rules[:0]
	for i, r := range cur.Rules {
		if !del[i] {
			kept = append(kept, r)
		}
	}
	cur.Rules = kept
	if err := s.Apply(cur); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "deleted %d rules, %d running\n", len(del), len(cur.Rules))
	return nil
}

// jsonRule is a rule for --json: match fields present only when set.
type jsonRule struct {
	Priority  uint32  `json:"priority"`
	Name      string  `json:"name,omitempty"`
	Ifindex   *uint32 `json:"ifindex,omitempty"`
	VLAN      *uint16 `json:"vlan,omitempty"`
	EtherType *uint16 `json:"ethertype,omitempty"`
	Proto     *uint8  `json:"proto,omitempty"`
	Src       string  `json:"src,omitempty"`
	Dst       string  `json:"dst,omitempty"`
	Sport     string  `json:"sport,omitempty"`
	Dport     string  `json:"dport,omitempty"`
	Action    string  `json:"action"`
	Packets   *uint64 `json:"packets,omitempty"`
	Bytes     *uint64 `json:"bytes,omitempty"`
}

func toJSONRule(r rules.Rule) jsonRule {
	j := jsonRule{Priority: r.Priority, Name: r.Name, Action: r.Action.String()}
	f := r.Fields
	if f&rules.FieldIfindex != 0 {
		j.Ifindex = &r.Ifindex
	}
	if f&rules.FieldVLAN != 0 {
		j.VLAN = &r.VLAN
	}
	if f&rules.FieldEtherType != 0 {
		j.EtherType = &r.EtherType
	}
	if f&rules.FieldProto != 0 {
		j.Proto = &r.Proto
	}
	if f&rules.FieldSrc != 0 {
		j.Src = r.Src.String()
	}
	if f&rules.FieldDst != 0 {
		j.Dst = r.Dst.String()
	}
	if f&rules.FieldSport != 0 {
		j.Sport = r.Sport.String()
	}
	if f&rules.FieldDport != 0 {
		j.Dport = r.Dport.String()
	}
	return j
}

type jsonQueueCount struct {
	Queue   int    `json:"queue"`
	Packets uint64 `json:"packets"`
}

type jsonCounter struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// printRules prints the set, with counters when rs and st are given.
func printRules(w io.Writer, set *rules.Set, rs []bpf.RuleStat, st *bpf.SteerStats, asJSON bool) error {
	if asJSON {
		out := struct {
			Default   string                 `json:"default"`
			Malformed string                 `json:"malformed"`
			Rules     []jsonRule             `json:"rules"`
			NoMatch   *jsonCounter           `json:"nomatch,omitempty"`
			Reasons   map[string]jsonCounter `json:"malformed_frames,omitempty"`
			Misses    *jsonCounter           `json:"flow_cache_misses,omitempty"`
			Unbound   []jsonQueueCount       `json:"unbound_queues,omitempty"`
		}{Default: set.Default.String(), Malformed: set.Malformed.String(), Rules: []jsonRule{}}
		for i, r := range set.Rules {
			j := toJSONRule(r)
			if rs != nil {
				j.Packets, j.Bytes = &rs[i].Packets, &rs[i].Bytes
			}
			out.Rules = append(out.Rules, j)
		}
		if st != nil {
			out.NoMatch = &jsonCounter{st.NoMatch.Packets, st.NoMatch.Bytes}
			out.Misses = &jsonCounter{st.CacheMisses.Packets, st.CacheMisses.Bytes}
			out.Unbound = []jsonQueueCount{}
			for _, c := range st.Unbound {
				out.Unbound = append(out.Unbound, jsonQueueCount{c.Queue, c.Packets})
			}
			out.Reasons = map[string]jsonCounter{}
			for r := rules.ReasonNone + 1; r < rules.NumReasons; r++ {
				out.Reasons[r.String()] = jsonCounter{st.Malformed[r].Packets, st.Malformed[r].Bytes}
			}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "PRIORITY\tNAME\tMATCH\tACTION"
	if rs != nil {
		head += "\tPACKETS\tBYTES"
	}
	fmt.Fprintln(tw, head)
	for i, r := range set.Rules {
		name := r.Name
		if name == "" {
			name = "-"
		}
		line := fmt.Sprintf("%d\t%s\t%s\t%s", r.Priority, name, r.MatchString(), r.Action)
		if rs != nil {
			line += fmt.Sprintf("\t%d\t%d", rs[i].Packets, rs[i].Bytes)
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d rules; no match: %s; malformed frames: %s\n", len(set.Rules), set.Default, set.Malformed)
	if st != nil {
		fmt.Fprintf(w, "unmatched: %d packets, %d bytes\n", st.NoMatch.Packets, st.NoMatch.Bytes)
		decided := st.NoMatch.Packets
		for i := range rs {
			decided += rs[i].Packets
		}
		fmt.Fprintf(w, "flow cache: %d of %d decided frames missed (the rule tables decided them)\n", st.CacheMisses.Packets, decided)
		fmt.Fprintf(w, "unbound queues: %v (redirected frames that found no socket on their RX queue went to the kernel stack)\n", st.Unbound)
		var parts []string
		for r := rules.ReasonNone + 1; r < rules.NumReasons; r++ {
			if c := st.Malformed[r]; c.Packets > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", r, c.Packets))
			}
		}
		tot := st.MalformedTotal()
		fmt.Fprintf(w, "malformed: %d packets, %d bytes", tot.Packets, tot.Bytes)
		if len(parts) > 0 {
			fmt.Fprintf(w, " (%s)", strings.Join(parts, ", "))
		}
		fmt.Fprintln(w)
	}
	return nil
}
