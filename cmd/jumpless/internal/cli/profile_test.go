package cli

import (
	"strings"
	"testing"
)

// TestKeyLinesFindsKeysUnderTheirTunnel guards the line numbers the profile
// errors name: keys are found under their own [tunnel.NAME] header, quoted
// names included, and not under another tunnel's.
func TestKeyLinesFindsKeysUnderTheirTunnel(t *testing.T) {
	text := `# comment
[tunnel.orders]
target = "i-0123456789abcdef0"

[tunnel."billing-eu"]
  target="i-0fedcba9876543210"
'ssh-user' = "admin"
[other]
target = "x"
`
	l := keyLines(text)
	for k, want := range map[string]int{
		"orders": 2, "orders\x00target": 3, "billing-eu": 5, "billing-eu\x00target": 6, "billing-eu\x00ssh-user": 7, "other": 8,
	} {
		if l[k] != want {
			t.Errorf("line of %q = %d, want %d", strings.ReplaceAll(k, "\x00", "."), l[k], want)
		}
	}
	if _, ok := l["orders\x00ssh-user"]; ok {
		t.Error("billing-eu's key recorded under orders")
	}
}

// FuzzParseProfileConfig guards the config parser against panics on any
// input, and checks that every tunnel it returns has a header line.
func FuzzParseProfileConfig(f *testing.F) {
	f.Add("[tunnel.orders]\ntarget = \"i-0123456789abcdef0\"\nforward = [\"1:h:2\"]\nsessions = 2\n")
	f.Add("[tunnel.\"a b\"]\nssh-agent = true\n[x]\n")
	f.Add("tunnel.a.target = 'i-1'\n")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := parseProfileConfig("f.toml", []byte(text))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for name := range c.tunnels {
			_ = c.where(name, "")
		}
	})
}
