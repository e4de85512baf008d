package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/xdpipe/xdpipe/dataplane"
)

// QueueList is "all", "0,1", "0-3" or a YAML sequence of queue numbers.
type QueueList string

func (q *QueueList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.SequenceNode {
		parts := make([]string, len(n.Content))
		for i, c := range n.Content {
			parts[i] = c.Value
		}
		*q = QueueList(strings.Join(parts, ","))
		return nil
	}
	*q = QueueList(n.Value)
	return nil
}

// Duration is a time.Duration in YAML ("100us", "1s"); Set says it was
// given (0 can mean something else than unset).
type Duration struct {
	time.Duration
	Set bool
}

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	if v < 0 {
		return fmt.Errorf("line %d: duration %s: must not be negative", n.Line, n.Value)
	}
	d.Duration, d.Set = v, true
	return nil
}

// Stage is one stage of the file: a bare name ("macswap") or a one-key
// mapping from the name to its options ({pcap: {path: x.pcap, snaplen:
// 128}}), decoded into the registry kind's options value; Where is its
// line.
type Stage dataplane.Stage

func (s *Stage) UnmarshalYAML(n *yaml.Node) error {
	var opts *yaml.Node
	switch n.Kind {
	case yaml.ScalarNode:
		s.Kind = n.Value
	case yaml.MappingNode:
		if len(n.Content) != 2 {
			return fmt.Errorf("line %d: a stage is a name or a mapping of one name to its options", n.Line)
		}
		s.Kind = n.Content[0].Value
		opts = n.Content[1]
	default:
		return fmt.Errorf("line %d: a stage is a name or a mapping of one name to its options", n.Line)
	}
	c, err := dataplane.NewStage(s.Kind)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	c.Where = fmt.Sprintf("line %d", n.Line)
	*s = Stage(c)
	switch {
	case opts == nil || opts.Kind == yaml.ScalarNode && opts.Value == "":
		return nil
	case opts.Kind != yaml.MappingNode:
		return fmt.Errorf("line %d: options of stage %s must be a mapping", opts.Line, s.Kind)
	}
	allowed := optionNames(s.Options)
	for i := 0; i < len(opts.Content); i += 2 {
		if k := opts.Content[i].Value; !slices.Contains(allowed, k) {
			return fmt.Errorf("line %d: stage %s has no option %q (options: %s)", opts.Content[i].Line, s.Kind, k, strings.Join(allowed, ", "))
		}
	}
	return opts.Decode(s.Options)
}

// optionNames lists the yaml names of an options struct's fields.
func optionNames(opts any) []string {
	t := reflect.TypeOf(opts).Elem()
	var names []string
	for i := range t.NumField() {
		if name := yamlKey(t.Field(i)); name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}

// yamlKey is a struct field's name in YAML.
func yamlKey(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

// Load reads a config file; unknown keys are errors.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse parses a config file's contents; unknown keys are errors.
func Parse(b []byte) (*File, error) {
	var c File
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(b, err)
	}
	return &c, nil
}

var (
	yamlTypeErr  = regexp.MustCompile("^line ([0-9]+): cannot unmarshal !!(\\w+)(?: `(.*)`)? into (\\S+)$")
	yamlFieldErr = regexp.MustCompile(`^line ([0-9]+): field (\S+) not found in type \S+$`)
)

// yamlError puts a decoding error on one line, each problem with its line
// and key and what the key wants, in the words of the file rather than Go's
// type names ("line 2: ring: `abc` is not a whole number").
func yamlError(b []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var doc yaml.Node
	_ = yaml.Unmarshal(b, &doc)
	type at struct {
		line  int
		value string
	}
	keys := map[at]string{} // a value where it is: its key
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				keys[at{n.Content[i+1].Line, n.Content[i+1].Value}] = n.Content[i].Value
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&doc)
	msgs := make([]string, len(te.Errors))
	for i, e := range te.Errors {
		if m := yamlFieldErr.FindStringSubmatch(e); m != nil {
			msgs[i] = fmt.Sprintf("line %s: unknown key %s", m[1], m[2])
			continue
		}
		m := yamlTypeErr.FindStringSubmatch(e)
		if m == nil {
			msgs[i] = e
			continue
		}
		line, _ := strconv.Atoi(m[1])
		key := ""
		if k, ok := keys[at{line, m[3]}]; ok {
			key = k + ": "
		}
		what := "`" + m[3] + "`"
		switch m[2] {
		case "seq":
			what = "a list"
		case "map":
			what = "a mapping"
		}
		msgs[i] = fmt.Sprintf("line %d: %s%s is not %s", line, key, what, yamlWants(m[4]))
	}
	return errors.New(strings.Join(msgs, "; "))
}

// yamlWants says what a Go type holds, in a config file's words.
func yamlWants(goType string) string {
	switch {
	case goType == "time.Duration":
		return "a duration with its unit (15s, 1m)"
	case strings.HasPrefix(goType, "uint"):
		return "a whole number, 0 or more"
	case strings.HasPrefix(goType, "int"):
		return "a whole number"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "bool":
		return "true or false"
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["):
		return "a mapping"
	}
	return "a mapping of options" // a struct
}
