package cli

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/jumpless/jumpless/dbauth"
	jdialer "github.com/jumpless/jumpless/dialer"
)

// dbCredOpts are the database login flags of run and check.
type dbCredOpts struct {
	rdsIAM   bool
	dbUser   string
	dbSecret string
}

func (d *dbCredOpts) register(s *flagSet) {
	s.group("Database login (no stored password)")
	s.boolVar(&d.rdsIAM, "rds-iam", "make an RDS IAM authentication token (valid 15 min) for --db-user at the forwarded HOST:PORT; run passes it as PGPASSWORD/MYSQL_PWD")
	s.stringVar(&d.dbUser, "db-user", "USER", "", "database user for --rds-iam")
	s.stringVar(&d.dbSecret, "db-secret", "SECRET", "", "AWS Secrets Manager secret (name or ARN) holding username and password (RDS-managed secrets too); run passes them as PGUSER/PGPASSWORD or MYSQL_PWD")
}

func (d *dbCredOpts) validate() error {
	if d.rdsIAM && d.dbSecret != "" {
		return usagef("--rds-iam and --db-secret are two ways to log in: pass one")
	}
	if d.rdsIAM && d.dbUser == "" {
		return usagef("--rds-iam needs --db-user USER (the database user granted rds_iam / AWSAuthenticationPlugin)")
	}
	return nil
}

func (d *dbCredOpts) enabled() bool { return d.rdsIAM || d.dbSecret != "" }

// credentials returns the login source for the flags.
func (d *dbCredOpts) credentials(awsCfg aws.Config) jdialer.Credentials {
	if d.rdsIAM {
		return &dbauth.RDSIAM{AWS: awsCfg, User: d.dbUser}
	}
	return &dbauth.Secret{AWS: awsCfg, SecretID: d.dbSecret}
}

// login gets the login for remote ("host:port" as the database knows it)
// and describes it without the password, for check and --verbose.
func (d *dbCredOpts) login(ctx context.Context, awsCfg aws.Config, remote string) (jdialer.Login, string, error) {
	l, err := d.credentials(awsCfg).Login(ctx, remote, d.dbUser)
	if err != nil {
		return l, "", err
	}
	if d.rdsIAM {
		return l, fmt.Sprintf("RDS IAM token for %s at %s (region %s, valid 15 min)", l.User, remote, awsCfg.Region), nil
	}
	return l, fmt.Sprintf("secret %s: user %s", d.dbSecret, l.User), nil
}

// childEnv is the environment a database client needs for the login.
func dbLoginEnv(kind string, l jdialer.Login) []string {
	env := []string{"JUMPLESS_DB_USER=" + l.User, "JUMPLESS_DB_PASSWORD=" + l.Password}
	switch kind {
	case "pg":
		env = append(env, "PGUSER="+l.User, "PGPASSWORD="+l.Password)
	case "mysql":
		env = append(env, "MYSQL_PWD="+l.Password)
	}
	return env
}

// dbLogin loads the AWS configuration and gets the login for remote.
func (o *tunnelOpts) dbLogin(ctx context.Context, env *Env, d *dbCredOpts, remote string) (jdialer.Login, string, error) {
	awsCfg, _, err := o.awsConfig(ctx, env)
	if err != nil {
		return jdialer.Login{}, "", err
	}
	return d.login(ctx, awsCfg, remote)
}
