package cli

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// forwardSpec is one -L [bind_address:]port:host:hostport.
type forwardSpec struct {
	// Listen is the local address to listen on ("127.0.0.1:15432";
	// port 0 picks a free port).
	Listen string
	// Remote is the address dialed from the bastion ("db.internal:5432").
	Remote string
}

func (f forwardSpec) String() string { return f.Listen + ":" + f.Remote }

// parseForwardSpec parses an ssh -L style spec:
//
//	port:host:hostport                    listen on 127.0.0.1:port
//	bind_address:port:host:hostport       listen on bind_address:port
//
// IPv6 addresses are written in brackets ("[::1]:15432:[fd00::5]:5432").
// A bind_address of "*" or "" listens on every interface, "localhost" on
// 127.0.0.1.
func parseForwardSpec(s string) (forwardSpec, error) {
	const want = "want [bind_address:]port:host:hostport, e.g. 15432:db.internal:5432"
	parts, err := splitColons(s)
	if err != nil {
		return forwardSpec{}, fmt.Errorf("-L %q: %v; %s", s, err, want)
	}
	var bind, port, host, hostport string
	switch len(parts) {
	case 3:
		bind, port, host, hostport = "127.0.0.1", parts[0], parts[1], parts[2]
	case 4:
		bind, port, host, hostport = parts[0], parts[1], parts[2], parts[3]
		switch bind {
		case "*", "":
			bind = ""
		case "localhost":
			bind = "127.0.0.1"
		}
	default:
		return forwardSpec{}, fmt.Errorf("-L %q: %s", s, want)
	}
	if _, err := parsePort(port, true); err != nil {
		return forwardSpec{}, fmt.Errorf("-L %q: local port %q: %v", s, port, err)
	}
	if host == "" {
		return forwardSpec{}, fmt.Errorf("-L %q: remote host is empty; %s", s, want)
	}
	if strings.ContainsFunc(host+bind, badHostRune) {
		return forwardSpec{}, fmt.Errorf("-L %q: host names cannot contain spaces or control characters", s)
	}
	if _, err := parsePort(hostport, false); err != nil {
		return forwardSpec{}, fmt.Errorf("-L %q: remote port %q: %v", s, hostport, err)
	}
	return forwardSpec{Listen: net.JoinHostPort(bind, port), Remote: net.JoinHostPort(host, hostport)}, nil
}

// parseRemote parses --to host:port; the forward listens on 127.0.0.1:0.
func parseRemote(s string) (forwardSpec, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || strings.ContainsFunc(host, badHostRune) {
		return forwardSpec{}, fmt.Errorf("--to %q: want host:port as seen from the bastion, e.g. db.internal:5432", s)
	}
	if _, err := parsePort(port, false); err != nil {
		return forwardSpec{}, fmt.Errorf("--to %q: port %q: %v", s, port, err)
	}
	return forwardSpec{Listen: "127.0.0.1:0", Remote: net.JoinHostPort(host, port)}, nil
}

func parsePort(s string, zeroOK bool) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 65535 || (n == 0 && !zeroOK) {
		if zeroOK {
			return 0, fmt.Errorf("want a number 0-65535")
		}
		return 0, fmt.Errorf("want a number 1-65535")
	}
	return n, nil
}

// splitColons splits s at colons outside square brackets, removing the
// brackets.
func splitColons(s string) ([]string, error) {
	var parts []string
	var cur strings.Builder
	inBracket := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '[' && !inBracket && cur.Len() == 0:
			inBracket = true
		case c == ']' && inBracket:
			inBracket = false
			if i+1 < len(s) && s[i+1] != ':' {
				return nil, fmt.Errorf("']' must be followed by ':'")
			}
		case c == '[' || c == ']':
			return nil, fmt.Errorf("misplaced %q (brackets go around a whole IPv6 address)", c)
		case c == ':' && !inBracket:
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if inBracket {
		return nil, fmt.Errorf("unclosed '['")
	}
	return append(parts, cur.String()), nil
}

func badHostRune(r rune) bool {
	return r <= ' ' || r == 0x7f || r == '/' || r == '@'
}
