package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
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
	return decode(opts, reflect.ValueOf(s.Options).Elem())
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
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var c File
	if err := decode(&doc, reflect.ValueOf(&c).Elem()); err != nil {
		return nil, err
	}
	return &c, nil
}

// decode decodes n into v and returns every problem on one line: a key
// v's struct does not have, or a value its field cannot hold, each with
// its line and key and what the key wants, in the words of the file
// rather than Go's type names ("line 2: ring: `abc` is not a whole
// number"). It walks the document itself, field by field, so that the
// messages never depend on the YAML library's wording: the library
// decodes only scalars, and says only whether it could.
func decode(n *yaml.Node, v reflect.Value) error {
	var d decoder
	d.value(n, v, "")
	if len(d.errs) > 0 {
		return errors.New(strings.Join(d.errs, "; "))
	}
	return nil
}

// decoder collects decode's problems.
type decoder struct{ errs []string }

// value decodes n, the value of key (empty at the top), into v.
func (d *decoder) value(n *yaml.Node, v reflect.Value, key string) {
	switch n.Kind {
	case 0: // an empty document
		return
	case yaml.DocumentNode:
		for _, c := range n.Content {
			d.value(c, v, key)
		}
		return
	case yaml.AliasNode:
		n = n.Alias
	}
	if u, ok := v.Addr().Interface().(yaml.Unmarshaler); ok {
		// This package's own types: their errors are already one line
		// each, with the line.
		if err := n.Decode(u); err != nil {
			d.errs = append(d.errs, err.Error())
		}
		return
	}
	switch {
	case v.Kind() == reflect.Pointer:
		if n.Tag == "!!null" {
			v.SetZero()
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.value(n, v.Elem(), key)
	case v.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.mismatch(n, v.Type(), key)
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			f, ok := fieldOf(v, k.Value)
			if !ok {
				d.errs = append(d.errs, fmt.Sprintf("line %d: unknown key %s", k.Line, k.Value))
				continue
			}
			d.value(n.Content[i+1], f, k.Value)
		}
	case v.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.value(c, s.Index(i), key)
		}
		v.Set(s)
	default:
		if n.Kind != yaml.ScalarNode || n.Decode(v.Addr().Interface()) != nil {
			d.mismatch(n, v.Type(), key)
		}
	}
}

// mismatch records that n, key's value, is not what t holds.
func (d *decoder) mismatch(n *yaml.Node, t reflect.Type, key string) {
	what := "`" + n.Value + "`"
	switch n.Kind {
	case yaml.SequenceNode:
		what = "a list"
	case yaml.MappingNode:
		what = "a mapping"
	}
	if key != "" {
		key += ": "
	}
	d.errs = append(d.errs, fmt.Sprintf("line %d: %s%s is not %s", n.Line, key, what, wants(t)))
}

// fieldOf is the field of struct v whose YAML key is key.
func fieldOf(v reflect.Value, key string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() && yamlKey(f) == key {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// wants says what a value of type t is, in a config file's words.
func wants(t reflect.Type) string {
	if t == reflect.TypeFor[time.Duration]() {
		return "a duration with its unit (15s, 1m)"
	}
	switch t.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, 0 or more"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map:
		return "a mapping"
	}
	return "a mapping of options" // a struct
}
