// Package aliyuntest is an emulator of Alibaba Cloud Assistant's Session
// Manager for tests, started in one line like net/http/httptest:
//
//	srv, err := aliyuntest.NewServer(aliyuntest.Config{
//		Instances: map[string]string{"i-bp1emulated0000001": "127.0.0.1"},
//	})
//	defer srv.Close()
//	cfg := aliyun.Config{Region: srv.Region(), InstanceID: "i-bp1emulated0000001",
//		PortNumber: port, Endpoint: srv.Endpoint(), Credential: srv.Credential()}
//
// It serves, over real HTTP and websockets on 127.0.0.1:
//
//   - the ECS OpenAPI actions StartTerminalSession, EndTerminalSession,
//     DescribeTerminalSessions, RunCommand, InvokeCommand and
//     DescribeInvocationResults (RPC style), with Alibaba's request
//     signatures (ACS3-HMAC-SHA256 as the current SDK signs, and the older
//     HMAC-SHA1 query signature) verified against the configured keys, and
//     errors in Alibaba's shape ({"RequestId","HostId","Code","Message",
//     "Recommend"} with the HTTP status);
//   - the client leg on the WebSocketUrl (schema 1.01 headers; the
//     server's messages carry the channel id, as the stand-in server of the
//     capture did);
//   - an emulated agent per connection with the behaviour measured on the
//     real agent v2.2.3.578 (docs/aliyun.md): it dials the target 1 s after
//     the websocket opens and drops Input that arrives before; it sends at
//     most 2048 bytes per Output and sleeps 83 ms after each (24.3 KB/s
//     measured) unless a flow limit raises the rate; it does not signal the
//     target's close, and re-dials the target on the next Input; it ignores
//     Close (type 3); it ends a channel that received nothing for 180 s.
//
// The server never is kinder than the real service: where the evidence
// is missing it picks the pessimistic side and says so (see Config).
package aliyuntest
