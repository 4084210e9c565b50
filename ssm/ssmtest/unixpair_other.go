//go:build !linux

package ssmtest

import (
	"errors"
	"net"
)

// unixPair is Linux-only here; other systems use the TCP fallback.
func unixPair() (net.Conn, net.Conn, error) {
	return nil, nil, errors.New("ssmtest: no socketpair on this system")
}
