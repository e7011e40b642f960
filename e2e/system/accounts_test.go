package system_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv"
)

// account is a user of the system with a token from the ingress's login.
type account struct {
	ID       int64
	Username string
	Email    string
	Password string
	Token    string
}

// createAccounts logs the bootstrap admin in and registers and logs in
// two ordinary users, alice and bob. The first login also proves that the
// ingress has the users service's keys: it retries until an
// authenticated read passes.
func (s *system) createAccounts(ctx context.Context) error {
	s.admin = account{Email: s.adminEmail, Password: s.adminPassword}
	// One login a second at most: the ingress allows 10 a minute.
	err := localenv.Poll(ctx, time.Second, func(ctx context.Context) error {
		if err := s.login(ctx, &s.admin); err != nil {
			return err
		}
		r, err := s.send(ctx, request{method: http.MethodGet, path: "/api/users/users?limit=1", token: s.admin.Token})
		if err != nil {
			return err
		}
		if r.status != http.StatusOK {
			return fmt.Errorf("authenticated read: %s", r)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("admin login through the ingress: %w", err)
	}
	for _, u := range []struct {
		name string
		a    *account
	}{{"alice", &s.alice}, {"bob", &s.bob}} {
		a := u.a
		if *a, err = s.register(ctx, u.name); err != nil {
			return err
		}
		if err := s.login(ctx, a); err != nil {
			return err
		}
	}
	return nil
}

// register creates a user named prefix plus a random suffix.
func (s *system) register(ctx context.Context, prefix string) (account, error) {
	suffix := randomHex(4)
	a := account{Username: prefix + "-" + suffix, Email: prefix + "-" + suffix + "@example.com", Password: "password-" + randomHex(8)}
	body, err := json.Marshal(map[string]string{"username": a.Username, "email": a.Email, "password": a.Password})
	if err != nil {
		return a, err
	}
	r, err := s.send(ctx, request{method: http.MethodPost, path: "/api/users/users", body: string(body)})
	if err != nil {
		return a, err
	}
	if r.status != http.StatusCreated {
		return a, fmt.Errorf("register %s: %s", a.Username, r)
	}
	var created struct{ ID int64 }
	if err := json.Unmarshal(r.body, &created); err != nil || created.ID == 0 {
		return a, fmt.Errorf("register %s: no id in %s (%w)", a.Username, r.body, err)
	}
	a.ID = created.ID
	return a, nil
}

// login sets a.Token, and a.ID from the token's owner if unknown.
func (s *system) login(ctx context.Context, a *account) error {
	body, err := json.Marshal(map[string]string{"email": a.Email, "password": a.Password})
	if err != nil {
		return err
	}
	r, err := s.send(ctx, request{method: http.MethodPost, path: "/api/users/login", body: string(body)})
	if err != nil {
		return err
	}
	if r.status != http.StatusOK {
		return fmt.Errorf("login %s: %s", a.Email, r)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(r.body, &tok); err != nil || tok.AccessToken == "" {
		return fmt.Errorf("login %s: no token in %s (%w)", a.Email, r.body, err)
	}
	a.Token = tok.AccessToken
	return nil
}
