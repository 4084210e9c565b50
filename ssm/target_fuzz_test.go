package ssm_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/jumpless/jumpless/ssm"
)

// FuzzParseSelector: tag selectors parse into a non-empty key and value
// that rebuild the selector, or fail with a ConfigError.
func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"tag:Name=etl-bastion", "tag:a=b=c", "tag:", "tag:=", "i-0123456789abcdef0", "tag:k=" + strings.Repeat("v", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, v, err := ssm.ParseSelector(s)
		if err != nil {
			if !errors.Is(err, ssm.ErrInvalidConfig) {
				t.Fatalf("%q: untyped error %v", s, err)
			}
			return
		}
		if k == "" || v == "" || "tag:"+k+"="+v != s {
			t.Fatalf("%q parsed as %q=%q", s, k, v)
		}
	})
}
