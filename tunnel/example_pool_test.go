package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/jumpless/jumpless/sshx"
	"github.com/jumpless/jumpless/ssm"
	"github.com/jumpless/jumpless/tunnel"
)

// A tunnel that outlives its sessions: when the service ends a session
// (here: its maximum session duration), the connection it carried fails
// with ErrSessionLost, the tunnel stays up and the next dial goes through
// the replacement session.
func ExampleReplaceConfig() {
	demo := startDemo()
	defer demo.close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tun, err := tunnel.Open(ctx, tunnel.Config{
		SSM:     ssm.Config{AWS: demo.emu.AWSConfig(), Target: "i-0123456789abcdef0"},
		SSH:     sshx.Config{PrivateKeyFile: demo.keyFile, KnownHostsFile: demo.knownHosts},
		Replace: tunnel.ReplaceConfig{Enabled: true},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer tun.Close()

	idle, err := tun.DialContext(ctx, "tcp", demo.hang)
	if err != nil {
		log.Fatal(err)
	}
	defer idle.Close()
	demo.emu.CloseChannel(tun.Stats().SessionIDs[0], "Your session has reached the maximum session duration and has been terminated.")
	_, err = idle.Read(make([]byte, 1))
	fmt.Println("connection on the ended session:", errors.Is(err, tunnel.ErrSessionLost), errors.Is(err, io.EOF))

	conn, err := tun.DialContext(ctx, "tcp", demo.service) // waits for the replacement
	if err != nil {
		log.Fatal(err)
	}
	greeting, _ := io.ReadAll(conn)
	conn.Close()
	fmt.Printf("%s\n", greeting)
	fmt.Println("tunnel error:", tun.Err(), "replacements:", tun.Stats().Replacements)
	// Output:
	// connection on the ended session: true false
	// hello from behind the instance
	// tunnel error: <nil> replacements: 1
}

// Sessions: AutoSessions starts one session and opens more while every
// session carries a busy connection (up to Scale.Max, 8 unless set);
// extra sessions close after Scale.IdleClose without a connection.
func ExampleAutoSessions() {
	demo := startDemo()
	defer demo.close()

	tun, err := tunnel.Open(context.Background(), tunnel.Config{
		SSM:      ssm.Config{AWS: demo.emu.AWSConfig(), Target: "i-0123456789abcdef0"},
		SSH:      sshx.Config{PrivateKeyFile: demo.keyFile, KnownHostsFile: demo.knownHosts},
		Sessions: tunnel.AutoSessions,
		Scale:    tunnel.ScaleConfig{Max: 4},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer tun.Close()
	fmt.Println("sessions at Open:", len(tun.Stats().SessionIDs))
	// Output: sessions at Open: 1
}
