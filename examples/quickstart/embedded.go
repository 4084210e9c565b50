package main

import (
	"context"
	"fmt"
	"net"
	"sync"

	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/memory"
	"github.com/dolthub/go-mysql-server/server"
	gsql "github.com/dolthub/go-mysql-server/sql"
	vsql "github.com/dolthub/vitess/go/mysql"
	"github.com/sirupsen/logrus"
)

// embeddedMySQL is an in-memory SQL engine speaking the MySQL wire
// protocol on 127.0.0.1 (github.com/dolthub/go-mysql-server), so that the
// quickstart needs nothing but Go. Any user name is accepted without a
// password.
type embeddedMySQL struct {
	srv  *server.Server
	addr string
	wg   sync.WaitGroup
}

// startEmbeddedMySQL serves database dbName on 127.0.0.1:<free port>.
func startEmbeddedMySQL(dbName string) (*embeddedMySQL, error) {
	logrus.SetLevel(logrus.ErrorLevel) // the engine logs every connection at info level
	db := memory.NewDatabase(dbName)
	db.BaseDatabase.EnablePrimaryKeyIndexes()
	pro := memory.NewDBProvider(db)
	engine := sqle.NewDefault(pro)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sessions := func(ctx context.Context, c *vsql.Conn, addr string) (gsql.Session, error) {
		var client gsql.Client
		if u, ok := c.UserData.(gsql.MysqlConnectionUser); ok {
			client = gsql.Client{Address: u.Host, User: u.User, Capabilities: c.Capabilities}
		}
		return memory.NewSession(gsql.NewBaseSessionWithClientServer(addr, client, c.ConnectionID), pro), nil
	}
	srv, err := server.NewServer(server.Config{Protocol: "tcp", Listener: ln}, engine, gsql.NewContext, sessions, nil)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("embedded MySQL: %w", err)
	}
	e := &embeddedMySQL{srv: srv, addr: ln.Addr().String()}
	e.wg.Go(func() { srv.Start() })
	return e, nil
}

// Close stops the server and waits for its accept loop.
func (e *embeddedMySQL) Close() error {
	err := e.srv.Close()
	e.wg.Wait()
	return err
}
