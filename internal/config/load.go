package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment variable of the configuration.
const EnvPrefix = "SWITCHYARD_"

// Key describes one setting: where it is read from and what it is.
type Key struct {
	Path   string // file key, "cluster.bind" for nested ones
	Env    string // environment variable
	Flag   string // flag name without dashes; "" when file only
	Help   string
	Live   bool // a gateway reload applies it
	Secret bool // the value names a secret file
	Type   reflect.Type

	index []int // field index path from the root struct
}

// Keys lists the settings of cfg, a pointer to Gateway or Backend (or any
// struct tagged the same way), in field order.
func Keys(cfg any) []Key {
	return keysOf(reflect.TypeOf(cfg).Elem(), "", nil)
}

func keysOf(t reflect.Type, prefix string, index []int) []Key {
	var out []Key
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		idx := append(append([]int(nil), index...), i)
		path := prefix + name
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
			out = append(out, keysOf(f.Type, path+".", idx)...)
			continue
		}
		k := Key{Path: path, Help: f.Tag.Get("help"), Live: f.Tag.Get("reload") == "live",
			Secret: f.Tag.Get("secret") == "file", Type: f.Type, index: idx,
			Env: EnvPrefix + strings.ToUpper(strings.NewReplacer(".", "_").Replace(path))}
		if scalar(f.Type) {
			k.Flag = f.Tag.Get("flag")
			if k.Flag == "" {
				k.Flag = strings.NewReplacer(".", "-", "_", "-").Replace(path)
			}
		} else {
			k.Env = "" // lists of structures: file only
		}
		out = append(out, k)
	}
	return out
}

// scalar reports whether a field of type t can be given as one string
// (environment, flag): numbers, strings, booleans, durations, lists of
// strings and string maps.
func scalar(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String, reflect.Int, reflect.Int64, reflect.Float64, reflect.Bool:
		return true
	case reflect.Slice:
		return t.Elem().Kind() == reflect.String
	case reflect.Map:
		return t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.String
	}
	return false
}

// field is the value of k in root (a struct value).
func (k Key) field(root reflect.Value) reflect.Value { return root.FieldByIndex(k.index) }

// set parses s into the field of k.
func (k Key) set(root reflect.Value, s string) error {
	v := k.field(root)
	switch {
	case k.Type == reflect.TypeFor[time.Duration]():
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("want a duration such as 30s or 250ms, got %q", s)
		}
		v.SetInt(int64(d))
	case k.Type.Kind() == reflect.String:
		v.SetString(s)
	case k.Type.Kind() == reflect.Int || k.Type.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return fmt.Errorf("want an integer, got %q", s)
		}
		v.SetInt(n)
	case k.Type.Kind() == reflect.Float64:
		n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return fmt.Errorf("want a number, got %q", s)
		}
		v.SetFloat(n)
	case k.Type.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("want true or false, got %q", s)
		}
		v.SetBool(b)
	case k.Type.Kind() == reflect.Slice:
		v.Set(reflect.ValueOf(splitList(s)))
	case k.Type.Kind() == reflect.Map:
		m, err := splitMap(s)
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf(m))
	default:
		return errors.New("cannot be given as text: use the file")
	}
	return nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	out := []string{}
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// splitMap parses k=v,k=v.
func splitMap(s string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range splitList(s) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("want key=value pairs, got %q", kv)
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m, nil
}

// Flags holds what the command line set, to be applied over the file and
// the environment at every load (a reload keeps the flags).
type Flags struct {
	keys map[string]Key // by flag name
	set  []flagValue    // in command-line order
}

type flagValue struct {
	key Key
	raw string
}

// BindFlags defines one flag per setting of cfg (a pointer to Gateway or
// Backend holding the defaults shown in -h) on fs.
func BindFlags(fs *flag.FlagSet, cfg any) *Flags {
	fl := &Flags{keys: map[string]Key{}}
	root := reflect.ValueOf(cfg).Elem()
	for _, k := range Keys(cfg) {
		if k.Flag == "" {
			continue
		}
		fl.keys[k.Flag] = k
		fs.Var(&flagVar{fl: fl, key: k, def: text(k.field(root))}, k.Flag, k.Help+" (`"+typeName(k.Type)+"`)")
	}
	return fl
}

// flagVar records a flag's raw text; it is parsed when the configuration
// is loaded, so that its problems are listed with all the others.
type flagVar struct {
	fl  *Flags
	key Key
	def string
}

func (v *flagVar) String() string {
	if v == nil {
		return ""
	}
	return v.def
}

func (v *flagVar) Set(s string) error {
	v.fl.set = append(v.fl.set, flagValue{v.key, s})
	return nil
}

func (v *flagVar) IsBoolFlag() bool { return v.key.Type.Kind() == reflect.Bool }

// typeName names a setting's type in -h.
func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "duration"
	case t.Kind() == reflect.Slice:
		return "list"
	case t.Kind() == reflect.Map:
		return "key=value,..."
	case t.Kind() == reflect.Float64:
		return "number"
	}
	return t.Kind().String()
}

// text is a field's value as a flag or the environment would give it.
func text(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case time.Duration:
		return x.String()
	case []string:
		return strings.Join(x, ",")
	case map[string]string:
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(x)) {
			kv = append(kv, k+"="+x[k])
		}
		return strings.Join(kv, ",")
	}
	if (v.Kind() == reflect.Slice || v.Kind() == reflect.Map) && v.Len() == 0 {
		return ""
	}
	return fmt.Sprint(v.Interface())
}

// Source is where a configuration is read from.
type Source struct {
	// File is the YAML file (--config); "" for none.
	File string
	// Env looks up an environment variable (os.LookupEnv); nil for none.
	Env func(string) (string, bool)
	// Flags are the command line's settings; nil for none.
	Flags *Flags
}

// Load fills cfg (a pointer to Gateway or Backend holding the defaults)
// from the file, then the environment, then the flags. Every problem is
// collected: the result is nil or *Problems.
func Load(cfg any, src Source) error {
	var p Problems
	root := reflect.ValueOf(cfg).Elem()
	if src.File != "" {
		loadFile(cfg, src.File, &p)
	}
	for _, k := range Keys(cfg) {
		if src.Env == nil || k.Env == "" {
			continue
		}
		if s, ok := src.Env(k.Env); ok {
			if err := k.set(root, s); err != nil {
				p.Addf("%s (environment): %v", k.Env, err)
			}
		}
	}
	if src.Flags != nil {
		for _, f := range src.Flags.set {
			if err := f.key.set(root, f.raw); err != nil {
				p.Addf("--%s: %v", f.key.Flag, err)
			}
		}
	}
	return p.Err()
}

// loadFile decodes the YAML file over cfg; unknown keys and values of the
// wrong type are problems, all of them.
func loadFile(cfg any, path string, p *Problems) {
	b, err := os.ReadFile(path)
	if err != nil {
		p.Addf("config file: %v", err)
		return
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err = dec.Decode(cfg)
	var te *yaml.TypeError
	switch {
	case err == nil || errors.Is(err, io.EOF): // an empty file sets nothing
	case errors.As(err, &te):
		for _, e := range te.Errors {
			p.Addf("%s: %s", path, e)
		}
	default:
		p.Addf("%s: %v", path, err)
	}
}

// Hash identifies a configuration: the first 16 hex digits of the SHA-256
// of its Print form (secrets by their file names, so a rotated key file
// keeps the hash; the admin API's config_hash).
func Hash(cfg any) string {
	b, err := Print(cfg)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Print writes cfg as YAML: the effective configuration. Secrets are
// files, so only their paths appear.
func Print(cfg any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# effective configuration: defaults < file < environment < flags\n")
	b.WriteString("# secrets are shown as the paths of their files, never their contents\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(cfg); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}

// Problems are everything wrong with a configuration, all at once.
type Problems struct{ List []string }

// Addf adds a problem.
func (p *Problems) Addf(format string, args ...any) {
	p.List = append(p.List, fmt.Sprintf(format, args...))
}

// AddErr adds each line of err (errors.Join'ed validation errors) as a
// problem; nil adds nothing.
func (p *Problems) AddErr(prefix string, err error) {
	if err == nil {
		return
	}
	if more, ok := err.(*Problems); ok {
		p.List = append(p.List, more.List...)
		return
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			p.List = append(p.List, prefix+line)
		}
	}
}

// Err is p as an error, nil when there is no problem.
func (p *Problems) Err() error {
	if p == nil || len(p.List) == 0 {
		return nil
	}
	return p
}

func (p *Problems) Error() string {
	return fmt.Sprintf("configuration: %d problem(s):\n  %s", len(p.List), strings.Join(p.List, "\n  "))
}

// Diff lists the keys whose values differ between a and b (pointers to the
// same configuration struct), split into those a reload applies (tag
// reload:"live") and those that need a restart.
func Diff(a, b any) (live, restart []string) {
	ra, rb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	for _, k := range Keys(a) {
		if reflect.DeepEqual(k.field(ra).Interface(), k.field(rb).Interface()) {
			continue
		}
		if k.Live {
			live = append(live, k.Path)
		} else {
			restart = append(restart, k.Path)
		}
	}
	return live, restart
}
