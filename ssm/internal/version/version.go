// Package version compares the dotted numeric versions AWS's agent and
// plugin exchange in the handshake ("3.3.1611.0", "1.2.650.0"), whose
// thresholds change the agent's behaviour (reference §8.1).
package version

import (
	"fmt"
	"strconv"
	"strings"
)

// Parse parses a dotted numeric version.
func Parse(v string) ([]int, error) {
	parts := strings.Split(v, ".")
	out := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("version %q is not dotted numbers", v)
		}
		out[i] = n
	}
	return out, nil
}

// Must is Parse for constants; it panics on a malformed version.
func Must(v string) []int {
	p, err := Parse(v)
	if err != nil {
		panic(err)
	}
	return p
}

// Compare compares component-wise (-1, 0, 1); with equal leading
// components, fewer components is smaller.
func Compare(a, b []int) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}
