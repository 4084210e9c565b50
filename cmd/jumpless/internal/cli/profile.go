package cli

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Tunnel profiles: a TOML file (the ssh_config habit) naming tunnels, so
// that "jumpless forward orders" and "jumpless run orders -- psql" need no
// other flags:
//
//	[tunnel.orders]
//	target      = "i-0123456789abcdef0"
//	region      = "eu-west-1"
//	profile     = "prod"                 # the AWS profile
//	ssh-user    = "ec2-user"
//	ssh-key     = "~/.ssh/orders_ed25519"
//	known-hosts = "~/.ssh/known_hosts"
//	forward     = ["15432:orders-db.internal:5432"]
//	env         = "pg"                   # run: PGHOST/PGPORT
//
//	[tunnel.hangzhou]
//	cloud          = "aliyun"            # Alibaba Cloud Assistant
//	instance-id    = "i-bp67acfmxazb4ph6ayrq"
//	region         = "cn-hangzhou"
//	aliyun-profile = "prod"              # or ALIBABA_CLOUD_* variables
//	to             = "db.internal:5432"  # direct mode (no SSH flags)
//
// Each key is the long name of a flag of forward, run or check, so every
// tunnel flag (present and future) works in a profile; "forward" is also
// accepted for local-forward and "aws-profile" for profile. Values are TOML
// strings, booleans, integers or, for repeatable flags, arrays of strings.
// Precedence: flags on the command line, then the profile named on the
// command line, then JUMPLESS_* variables, then the defaults.

// configEnv names the config file; --config overrides it.
const configEnv = "JUMPLESS_CONFIG"

// keyAliases maps profile keys that are not flag names to their flag.
var keyAliases = map[string]string{
	"forward":     "local-forward",
	"aws-profile": "profile",
}

// commandOnlyKeys are flags that only some of forward, run and check have:
// a profile may hold them for the commands that do; the others ignore them.
var commandOnlyKeys = map[string]bool{"local-forward": true, "to": true, "env": true, "quiet": true}

// defaultConfigPath is $JUMPLESS_CONFIG, else $XDG_CONFIG_HOME/jumpless/config.toml,
// else ~/.config/jumpless/config.toml.
func defaultConfigPath(env *Env) string {
	if p := env.getenv(configEnv); p != "" {
		return expandHome(p)
	}
	if x := env.getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "jumpless", "config.toml")
	}
	return expandHome("~/.config/jumpless/config.toml")
}

// profileConfig is a parsed config file.
type profileConfig struct {
	path    string
	tunnels map[string]map[string]any
	lines   map[string]int // "tunnel\x00key" and "tunnel" → line number
}

// loadProfileConfig reads and parses path. Syntax errors name the file,
// line and column.
func loadProfileConfig(path string) (*profileConfig, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseProfileConfig(path, text)
}

// parseProfileConfig parses the text of the config file path.
func parseProfileConfig(path string, text []byte) (*profileConfig, error) {
	var doc struct {
		Tunnel map[string]map[string]any `toml:"tunnel"`
	}
	md, err := toml.Decode(string(text), &doc)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, usagef("%s:%d:%d: %s (TOML syntax: key = \"value\" under a [tunnel.NAME] header)", path, pe.Position.Line, pe.Position.Col, pe.Message)
		}
		return nil, usagef("%s: %v (want [tunnel.NAME] tables of key = value)", path, err)
	}
	c := &profileConfig{path: path, tunnels: doc.Tunnel, lines: keyLines(string(text))}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		at := path
		for _, name := range []string{k.String(), k[0]} {
			if n := c.lines[name]; n > 0 {
				at = path + ":" + strconv.Itoa(n)
				break
			}
		}
		return nil, usagef("%s: unknown table or key %q: the file holds only [tunnel.NAME] tables", at, k.String())
	}
	return c, nil
}

var (
	tableLine = regexp.MustCompile(`^\s*\[\s*tunnel\s*\.\s*("([^"]*)"|'([^']*)'|[A-Za-z0-9_-]+)\s*\]`)
	otherLine = regexp.MustCompile(`^\s*\[\s*([^\]]*)\]`)
	keyLine   = regexp.MustCompile(`^\s*("([^"]*)"|'([^']*)'|[A-Za-z0-9_-]+)\s*=`)
)

// keyLines finds the line of each [tunnel.NAME] header and of each key under
// it (the decoder keeps no positions for valid documents), for error
// messages. Other tables are recorded under their name.
func keyLines(text string) map[string]int {
	lines := map[string]int{}
	table := ""
	for i, l := range strings.Split(text, "\n") {
		n := i + 1
		if m := tableLine.FindStringSubmatch(l); m != nil {
			table = unquote(m[1], m[2], m[3])
			if _, ok := lines[table]; !ok {
				lines[table] = n
			}
			continue
		}
		if m := otherLine.FindStringSubmatch(l); m != nil {
			table = "\x01" // keys of a table that is not a tunnel
			name := strings.TrimSpace(m[1])
			if _, ok := lines[name]; !ok {
				lines[name] = n
			}
			continue
		}
		if m := keyLine.FindStringSubmatch(l); m != nil {
			k := unquote(m[1], m[2], m[3])
			if table == "" {
				if _, ok := lines[k]; !ok {
					lines[k] = n
				}
				continue
			}
			lines[table+"\x00"+k] = n
		}
	}
	return lines
}

func unquote(raw, dq, sq string) string {
	switch {
	case strings.HasPrefix(raw, `"`):
		return dq
	case strings.HasPrefix(raw, `'`):
		return sq
	}
	return raw
}

// where is "FILE:LINE" of key in tunnel (or of the tunnel's header).
func (c *profileConfig) where(tunnel, key string) string {
	n := c.lines[tunnel+"\x00"+key]
	if key == "" {
		n = c.lines[tunnel]
	}
	if n == 0 {
		return c.path
	}
	return c.path + ":" + strconv.Itoa(n)
}

func (c *profileConfig) names() string {
	var names []string
	for n := range c.tunnels {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// profileOrigin records where a flag's value came from.
type profileOrigin struct {
	where  string // FILE:LINE
	tunnel string
	key    string
}

// applyProfile sets the flags of tunnel name from the config file, except
// those given on the command line. It records where each value came from,
// for locate.
func (s *flagSet) applyProfile(env *Env, name string) error {
	path := s.configPath
	if path == "" {
		path = defaultConfigPath(env)
	}
	path = expandHome(path)
	c, err := loadProfileConfig(path)
	if errors.Is(err, fs.ErrNotExist) {
		return usagef("tunnel %q: no config file %s (write [tunnel.%s] with target = \"i-...\" and the other flags as keys there, or pass --config FILE; see 'jumpless help %s')", name, path, name, s.cmd)
	}
	if err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			return err
		}
		return usagef("tunnel %q: cannot read %s: %v", name, path, err)
	}
	keys, ok := c.tunnels[name]
	if !ok {
		return usagef("%s: no [tunnel.%s] (tunnels in the file: %s)", path, name, c.names())
	}
	onCmdLine := map[string]bool{}
	s.fs.Visit(func(f *flag.Flag) { onCmdLine[f.Name] = true })
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	s.profileName, s.profilePath = name, path
	for _, key := range sorted {
		flagName := key
		if a, ok := keyAliases[key]; ok {
			flagName = a
		}
		at := c.where(name, key)
		fi := s.byName[flagName]
		if fi == nil || flagName == "tunnel" || flagName == "config" {
			if commandOnlyKeys[flagName] {
				continue // for another command
			}
			return usagef("%s: [tunnel.%s] unknown key %q%s (keys are the long flag names of 'jumpless %s --help', e.g. ssh-user = \"ec2-user\")", at, name, key, suggestKey(key, s), s.cmd)
		}
		if onCmdLine[fi.name] || (fi.short != "" && onCmdLine[fi.short]) {
			continue // the flag wins
		}
		vals, err := profileValues(keys[key], fi)
		if err != nil {
			return usagef("%s: [tunnel.%s] %s: %v", at, name, key, err)
		}
		f := s.fs.Lookup(fi.name)
		if lv, ok := f.Value.(*listValue); ok {
			*lv.p = nil
			lv.fromEnv = true // a list on the command line replaces it
			*lv.p = append(*lv.p, vals...)
		} else if err := f.Value.Set(vals[0]); err != nil {
			return usagef("%s: [tunnel.%s] %s = %s: %v (fix the value there, or override it with --%s)", at, name, key, tomlValue(keys[key]), err, fi.name)
		}
		if s.origin == nil {
			s.origin = map[string]profileOrigin{}
		}
		s.origin[fi.name] = profileOrigin{where: at, tunnel: name, key: key}
	}
	return nil
}

// profileValues converts a TOML value to flag values.
func profileValues(v any, fi *flagInfo) ([]string, error) {
	want := "a string"
	switch {
	case fi.isBool:
		want = "true or false"
	case fi.arg == "N" || fi.arg == "PORT":
		want = "a number"
	}
	switch x := v.(type) {
	case string:
		if fi.isBool {
			return nil, fmt.Errorf("want %s without quotes, e.g. %s = true", want, fi.name)
		}
		return []string{x}, nil
	case bool:
		if !fi.isBool {
			return nil, fmt.Errorf("want %s, not %v", want, x)
		}
		return []string{strconv.FormatBool(x)}, nil
	case int64:
		if fi.isBool {
			return nil, fmt.Errorf("want %s, not %d", want, x)
		}
		return []string{strconv.FormatInt(x, 10)}, nil
	case []any:
		if _, isList := fi.value.(*listValue); !isList {
			return nil, fmt.Errorf("takes one value, not a list")
		}
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("want a list of strings, e.g. [\"15432:db.internal:5432\"]")
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("want %s, not a TOML %T", want, v)
}

func tomlValue(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

// suggestKey proposes the flag a misspelt key probably meant.
func suggestKey(key string, s *flagSet) string {
	norm := func(k string) string {
		return strings.ToLower(strings.NewReplacer("_", "", "-", "", ".", "").Replace(k))
	}
	for name := range s.byName {
		if norm(name) == norm(key) {
			return fmt.Sprintf(" (did you mean %s?)", name)
		}
	}
	return ""
}

// locate adds the profile's file and line to a usage error about a flag
// whose value came from the profile: "--target "x" is not an instance id"
// becomes "FILE:LINE: [tunnel.orders] target: ...".
func (s *flagSet) locate(err error) error {
	var ue *usageError
	if err == nil || len(s.origin) == 0 || !errors.As(err, &ue) {
		return err
	}
	names := make([]string, 0, len(s.origin))
	for n := range s.origin {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return len(names[i]) > len(names[j]) })
	for _, n := range names {
		re := regexp.MustCompile(`--` + regexp.QuoteMeta(n) + `([^a-z-]|$)`)
		if re.MatchString(ue.msg) {
			o := s.origin[n]
			return usagef("%s: [tunnel.%s] %s: %s (fix it there, or override it with --%s)", o.where, o.tunnel, o.key, ue.msg, n)
		}
	}
	return err
}
