package dbauth_test

import (
	"strings"
	"testing"

	"github.com/jumpless/jumpless/dbauth"
)

// FuzzParseSecret: any secret string parses or fails without panicking,
// and an error never quotes the password.
func FuzzParseSecret(f *testing.F) {
	for _, s := range []string{
		`{"username":"etl","password":"p","engine":"postgres","host":"h","port":5432,"dbname":"d"}`,
		`{"username":"etl","password":"p","port":"3306"}`,
		`{"username":"etl"}`, `[]`, `{"port":1e99}`, ``,
	} {
		f.Add(s, "hunter2")
	}
	f.Fuzz(func(t *testing.T, s, pw string) {
		if len(pw) < 6 {
			return
		}
		in := strings.ReplaceAll(s, `"p"`, `"`+pw+`"`)
		v, err := dbauth.ParseSecret(in)
		if err != nil {
			if strings.Contains(err.Error(), pw) {
				t.Fatalf("error quotes the password: %v", err)
			}
			return
		}
		if v.Username == "" || v.Password == "" || v.Port < 0 || v.Port > 65535 {
			t.Fatalf("accepted %+v", v)
		}
		if strings.Contains(v.String(), v.Password) {
			t.Fatal("String shows the password")
		}
	})
}
