package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// flagSet wraps flag.FlagSet with JUMPLESS_* environment defaults, grouped
// help output and usage errors.
type flagSet struct {
	cmd    string
	fs     *flag.FlagSet
	groups []*flagGroup
	byName map[string]*flagInfo
	// synopsis, description and examples for --help.
	synopsis, about, examples string

	// Tunnel profiles (profile.go), for commands that call profileFlags.
	profiles    bool
	configPath  string                   // --config
	tunnelName  string                   // --tunnel
	profileName string                   // the tunnel applied, "" for none
	profilePath string                   // its config file
	origin      map[string]profileOrigin // flag name → where its value came from
}

type flagGroup struct {
	title string
	flags []*flagInfo
}

type flagInfo struct {
	name   string // long name, used as --name
	short  string // optional one-letter alias, used as -X
	env    string // JUMPLESS_... ("" for none)
	arg    string // value placeholder in help; "" for booleans
	usage  string
	def    string // default shown in help ("" for none)
	isBool bool
	value  flag.Value
}

func newFlagSet(cmd, synopsis, about, examples string) *flagSet {
	fs := flag.NewFlagSet("jumpless "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{cmd: cmd, fs: fs, byName: map[string]*flagInfo{}, synopsis: synopsis, about: about, examples: examples}
}

func (s *flagSet) group(title string) {
	s.groups = append(s.groups, &flagGroup{title: title})
}

func envName(flagName string) string {
	return "JUMPLESS_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (s *flagSet) add(v flag.Value, name, short, arg, def, usage string, isBool bool) {
	if len(s.groups) == 0 {
		s.group("Flags")
	}
	fi := &flagInfo{name: name, short: short, env: envName(name), arg: arg, usage: usage, def: def, isBool: isBool, value: v}
	g := s.groups[len(s.groups)-1]
	g.flags = append(g.flags, fi)
	s.byName[name] = fi
	s.fs.Var(v, name, usage)
	if short != "" {
		s.fs.Var(v, short, usage)
	}
}

// setEnvName changes the environment variable of flag name.
func (s *flagSet) setEnvName(name, env string) {
	s.byName[name].env = env
}

// stringVar defines a string flag. def is both the default value and what
// help shows.
func (s *flagSet) stringVar(p *string, name, arg, def, usage string) {
	*p = def
	s.add((*stringValue)(p), name, "", arg, def, usage, false)
}

func (s *flagSet) boolVar(p *bool, name, usage string) {
	s.add((*boolValue)(p), name, "", "", "", usage, true)
}

func (s *flagSet) intVar(p *int, name, arg string, def int, usage string) {
	*p = def
	d := ""
	if def != 0 {
		d = strconv.Itoa(def)
	}
	s.add((*intValue)(p), name, "", arg, d, usage, false)
}

func (s *flagSet) durationVar(p *time.Duration, name, arg string, def time.Duration, usage string) {
	*p = def
	d := ""
	if def != 0 {
		d = def.String()
	}
	s.add((*durationValue)(p), name, "", arg, d, usage, false)
}

// listVar defines a repeatable flag. The environment variable holds a
// comma- or space-separated list; any occurrence on the command line
// replaces the list from the environment.
func (s *flagSet) listVar(p *[]string, name, short, arg, usage string) {
	s.add(&listValue{p: p}, name, short, arg, "", usage, false)
}

// parse applies JUMPLESS_* environment variables, then args. It returns
// errHelp after printing help to stdout for -h/--help.
func (s *flagSet) parse(env *Env, args []string) error {
	for _, g := range s.groups {
		for _, fi := range g.flags {
			v := env.getenv(fi.env)
			if v == "" {
				continue
			}
			f := s.fs.Lookup(fi.name)
			if lv, ok := f.Value.(*listValue); ok {
				if err := lv.setEnv(v); err != nil {
					return usagef("invalid value in %s: %v", fi.env, err)
				}
				continue
			}
			if err := f.Value.Set(strings.TrimSpace(v)); err != nil {
				return usagef("invalid value %q in %s: %v", v, fi.env, err)
			}
		}
	}
	name := ""
	if s.profiles && len(args) > 0 && args[0] != "" && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:] // jumpless forward orders ...
	}
	if err := s.parseArgs(env, args); err != nil {
		return err
	}
	if !s.profiles {
		return nil
	}
	// A name after flags is not taken for a tunnel ("forward -L ... psql"
	// is a mistaken run): the name comes first, or with --tunnel.
	if s.tunnelName != "" && name != "" && s.tunnelName != name {
		return usagef("two tunnels named: %q and --tunnel %q (name one)", name, s.tunnelName)
	}
	if name == "" {
		name = s.tunnelName
	}
	if name == "" {
		return nil
	}
	env.locate = s.locate
	return s.applyProfile(env, name)
}

func (s *flagSet) parseArgs(env *Env, args []string) error {
	if err := s.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(env.Stdout, s.help())
			return errHelp
		}
		return &usageError{msg: strings.Replace(err.Error(), "flag provided but not defined", "unknown flag", 1) +
			fmt.Sprintf(" (see 'jumpless %s --help')", s.cmd)}
	}
	return nil
}

// isSet reports whether the flag was given on the command line, in the
// environment or in a tunnel profile.
func (s *flagSet) isSet(env *Env, name string) bool {
	set := false
	s.fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
		if fi := s.byName[name]; fi != nil && fi.short != "" && f.Name == fi.short {
			set = true
		}
	})
	if fi := s.byName[name]; fi != nil && env.getenv(fi.env) != "" {
		set = true
	}
	if _, ok := s.origin[name]; ok {
		set = true
	}
	return set
}

// help renders the command's --help text.
func (s *flagSet) help() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s\n\n%s\n", s.synopsis, strings.TrimSpace(s.about))
	for _, g := range s.groups {
		fmt.Fprintf(&b, "\n%s:\n", g.title)
		for _, fi := range g.flags {
			name := "--" + fi.name
			if fi.short != "" {
				name = "-" + fi.short + ", " + name
			}
			if fi.arg != "" {
				name += " " + fi.arg
			}
			fmt.Fprintf(&b, "  %s\n", name)
			usage := fi.usage
			if fi.def != "" {
				usage += " (default " + fi.def + ")"
			}
			usage += " [$" + fi.env + "]"
			for _, line := range wrap(usage, 72) {
				fmt.Fprintf(&b, "        %s\n", line)
			}
		}
	}
	if s.examples != "" {
		fmt.Fprintf(&b, "\nExamples:\n%s\n", strings.TrimRight(s.examples, "\n"))
	}
	b.WriteString(exitCodesHelp(s.cmd))
	return b.String()
}

func exitCodesHelp(cmd string) string {
	var b strings.Builder
	b.WriteString("\nExit status:\n")
	if cmd == "run" {
		b.WriteString("  N    the command's own exit status once it has started (128+S if killed by signal S)\n")
	}
	b.WriteString("  0    success")
	switch cmd {
	case "forward", "emulator":
		b.WriteString(" (also when stopped with Ctrl-C or SIGTERM)")
	case "check":
		b.WriteString(" (every step OK)")
	}
	b.WriteString("\n  1    other failure")
	if cmd == "check" {
		b.WriteString(" (a step failed; the report says why and what to change)")
	}
	b.WriteString("\n  2    usage error (unknown flag, missing or malformed value)\n")
	if cmd != "emulator" {
		b.WriteString("  3    connection or tunnel failure (AWS credentials/API, session, agent, SSH host key or auth, tunnel lost)\n")
	}
	return b.String()
}

// wrap splits s into lines of at most width runes at spaces.
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

type stringValue string

func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }
func (v *stringValue) String() string     { return string(*v) }

type boolValue bool

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("want true or false")
	}
	*v = boolValue(b)
	return nil
}
func (v *boolValue) String() string   { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) IsBoolFlag() bool { return true }

type intValue int

func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("want a whole number")
	}
	*v = intValue(n)
	return nil
}
func (v *intValue) String() string { return strconv.Itoa(int(*v)) }

type durationValue time.Duration

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want a duration like 30s or 2m")
	}
	*v = durationValue(d)
	return nil
}
func (v *durationValue) String() string { return time.Duration(*v).String() }

type listValue struct {
	p       *[]string
	fromEnv bool
}

func (v *listValue) setEnv(s string) error {
	*v.p = strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
	v.fromEnv = true
	return nil
}

func (v *listValue) Set(s string) error {
	if v.fromEnv {
		*v.p = nil
		v.fromEnv = false
	}
	*v.p = append(*v.p, s)
	return nil
}

func (v *listValue) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return strings.Join(*v.p, ",")
}

func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Version == "" || bi.Main.Version == "(devel)" {
		return ""
	}
	return bi.Main.Version
}

func mainUsage() string {
	var b strings.Builder
	b.WriteString(`jumpless reaches databases in private subnets through AWS Systems Manager
Session Manager (AWS-StartSSHSession) and SSH port forwarding.

Usage: jumpless COMMAND [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.summary)
	}
	b.WriteString(`  help      show this text, or a command's ("jumpless help forward" = "jumpless forward --help")
  version   print the version

Tunnel profiles: name tunnels in ~/.config/jumpless/config.toml (or
$JUMPLESS_CONFIG, --config FILE), one [tunnel.NAME] table each, keys being
the long flag names, and use them as "jumpless forward NAME",
"jumpless run NAME -- psql", "jumpless check NAME":

  [tunnel.orders]
  target      = "i-0123456789abcdef0"
  region      = "eu-west-1"
  aws-profile = "prod"
  ssh-user    = "ec2-user"
  ssh-key     = "~/.ssh/orders_ed25519"
  known-hosts = "~/.ssh/known_hosts"
  forward     = ["15432:orders-db.internal:5432"]
  env         = "pg"

Flags on the command line win over the profile, the profile over
JUMPLESS_* variables.

Every flag can also be set with an environment variable: --ssh-key is
JUMPLESS_SSH_KEY, --target is JUMPLESS_TARGET, and so on; a flag on the
command line wins over its variable. The AWS SDK's own variables
(AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SSM,
AWS_CA_BUNDLE, AWS_ACCESS_KEY_ID, ...) work as with the AWS CLI.

Examples:
  jumpless forward --target i-0123456789abcdef0 --ssh-key ~/.ssh/id_ed25519 \
      --known-hosts ~/.ssh/known_hosts -L 15432:db.internal:5432
  jumpless run --target i-0123456789abcdef0 --to db.internal:5432 --env pg -- \
      psql -U etl -d warehouse -c 'select 1'
  jumpless check --target i-0123456789abcdef0 --to db.internal:5432
  jumpless emulator --listen 127.0.0.1:4566 --target-addr 127.0.0.1:22 --print-env

Exit status:
  0  success    1  other failure    2  usage error    3  connection/tunnel failure
  run: the command's own exit status once it has started
`)
	return b.String()
}
