package dbauth_test

import (
	"fmt"

	"github.com/jumpless/jumpless/dbauth"
)

// An RDS-managed secret: username and password, with the endpoint beside
// them. String never shows the password.
func ExampleParseSecret() {
	v, err := dbauth.ParseSecret(`{"username":"etl","password":"correct horse","engine":"postgres","host":"dw.abc.eu-west-1.rds.amazonaws.com","port":5432,"dbname":"dw"}`)
	if err != nil {
		panic(err)
	}
	fmt.Println(v)
	// Output: {Username:etl Password:<redacted> Engine:postgres Host:dw.abc.eu-west-1.rds.amazonaws.com Port:5432 DBName:dw}
}
