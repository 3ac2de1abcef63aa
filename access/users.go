package access

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockerhub/lockerhub/audit"
	"github.com/lockerhub/lockerhub/pg"
)

// Roles (DESIGN.md decision 19). What each may do is decided at the edge, in
// web's role matrix.
const (
	RoleTechnician = "technician"
	RoleCourier    = "courier"
	RoleOnCall     = "oncall"
	RoleViewer     = "viewer"
)

// Roles lists every role, most powerful first.
var Roles = []string{RoleAdmin, RoleTechnician, RoleCourier, RoleOnCall, RoleViewer}

// ValidRole reports whether role is one of Roles.
func ValidRole(role string) bool {
	for _, r := range Roles {
		if r == role {
			return true
		}
	}
	return false
}

// Errors of users and sessions; web maps them to HTTP.
var (
	ErrInvalid    = errors.New("invalid")
	ErrExists     = errors.New("already exists")
	ErrNotFound   = errors.New("not found")
	ErrBadLogin   = errors.New("unknown user or wrong password")
	ErrDisabled   = errors.New("user is disabled")
	ErrNoSession  = errors.New("no session, or it has expired")
	errNoPassword = errors.New("empty password")
)

// Session lifetimes: a session ends after SessionIdle without a request, and
// SessionMax after login in any case.
const (
	SessionIdle = 12 * time.Hour
	SessionMax  = 7 * 24 * time.Hour
	// touchEvery limits how often a busy session's last_seen_at is written.
	touchEvery = time.Minute
)

// AdminUser is the user the hub creates on its first start.
const AdminUser = "admin"

var usernameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._@-]{0,63}$`)

// NormalizeUsername is how usernames are compared: trimmed, lower case.
func NormalizeUsername(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// User is a person who logs in.
type User struct {
	ID       int64  `json:"-"`
	Username string `json:"username"`
	Role     string `json:"role"`
	// Carrier, when set, limits the user to the lockers of that carrier.
	Carrier    string     `json:"carrier,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	DisabledAt *time.Time `json:"disabled_at,omitempty"`
}

const userColumns = `id, username, role, carrier, created_at, disabled_at`

func userFields(u *User) []any {
	return []any{&u.ID, &u.Username, &u.Role, &u.Carrier, &u.CreatedAt, &u.DisabledAt}
}

// CreateUser adds a user with a password and a role, for the whole fleet.
func (s *Store) CreateUser(ctx context.Context, username, password, role string) (User, error) {
	return s.AddUser(ctx, NewUser{Username: username, Password: password, Role: role})
}

// NewUser is a user to add.
type NewUser struct {
	Username, Password, Role string
	Carrier                  string // optional, required for couriers
}

// checkRoleCarrier checks a role and the carrier that goes with it.
func checkRoleCarrier(role, carrier string) (string, error) {
	if !ValidRole(role) {
		return "", fmt.Errorf("%w: role must be one of %s, got %q", ErrInvalid, strings.Join(Roles, ", "), role)
	}
	carrier, err := ValidCarrier(carrier)
	if err != nil {
		return "", err
	}
	if role == RoleCourier && carrier == "" {
		return "", fmt.Errorf("%w: a courier needs a carrier", ErrInvalid)
	}
	return carrier, nil
}

// ValidCarrier checks a carrier name as fleet does (trimmed, at most 64
// characters, no ',' or '|' or control characters); "" means none.
func ValidCarrier(c string) (string, error) {
	c = strings.TrimSpace(c)
	if len(c) > 64 || strings.ContainsAny(c, ",|") || strings.ContainsFunc(c, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", fmt.Errorf("%w: carrier must be at most 64 characters without ',', '|' or control characters", ErrInvalid)
	}
	return c, nil
}

// AddUser adds a user.
func (s *Store) AddUser(ctx context.Context, n NewUser) (User, error) {
	username, password, role := NormalizeUsername(n.Username), n.Password, n.Role
	if !usernameRE.MatchString(username) {
		return User{}, fmt.Errorf("%w: username must be 1 to 64 of a-z, 0-9, '.', '_', '@', '-', starting with a letter or digit", ErrInvalid)
	}
	carrier, err := checkRoleCarrier(role, n.Carrier)
	if err != nil {
		return User{}, err
	}
	hash, err := HashPassword(ctx, password)
	if errors.Is(err, ErrWeakPassword) {
		return User{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err != nil {
		return User{}, err
	}
	var u User
	err = pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO access_users (username, password_hash, role, carrier) VALUES ($1, $2, $3, $4)
			RETURNING `+userColumns, username, hash, role, carrier).Scan(userFields(&u)...)
		if err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Action: audit.ActionCreate, ObjectType: "user", ObjectID: u.Username, After: u})
	})
	if pg.IsUniqueViolation(err) {
		return User{}, fmt.Errorf("%w: user %s", ErrExists, username)
	}
	if err != nil {
		return User{}, fmt.Errorf("create user: %w", err)
	}
	return u, nil
}

// User returns a user by name.
func (s *Store) User(ctx context.Context, username string) (User, error) {
	var u User
	err := s.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM access_users WHERE username = $1`, NormalizeUsername(username)).
		Scan(userFields(&u)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, fmt.Errorf("%w: user %s", ErrNotFound, username)
	}
	if err != nil {
		return User{}, fmt.Errorf("get user: %w", err)
	}
	return u, nil
}

// SetPassword replaces a user's password and ends all of the user's sessions.
func (s *Store) SetPassword(ctx context.Context, username, password string) error {
	hash, err := HashPassword(ctx, password)
	if errors.Is(err, ErrWeakPassword) {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err != nil {
		return err
	}
	var id int64
	err = pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE access_users SET password_hash = $2 WHERE username = $1 RETURNING id`,
			NormalizeUsername(username), hash).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: user %s", ErrNotFound, username)
		}
		if err != nil {
			return fmt.Errorf("set password: %w", err)
		}
		if _, err = tx.Exec(ctx, `DELETE FROM access_sessions WHERE user_id = $1`, id); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Action: "set_password", ObjectType: "user", ObjectID: NormalizeUsername(username)})
	})
	if err != nil {
		return err
	}
	s.cache.dropUser(id)
	return nil
}

// DisableUser stops a user from logging in and ends the user's sessions.
func (s *Store) DisableUser(ctx context.Context, username string) error {
	var id int64
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE access_users SET disabled_at = coalesce(disabled_at, $2) WHERE username = $1 RETURNING id`,
			NormalizeUsername(username), s.now()).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: user %s", ErrNotFound, username)
		}
		if err != nil {
			return fmt.Errorf("disable user: %w", err)
		}
		if _, err = tx.Exec(ctx, `DELETE FROM access_sessions WHERE user_id = $1`, id); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Action: "disable", ObjectType: "user", ObjectID: NormalizeUsername(username)})
	})
	if err != nil {
		return err
	}
	s.cache.dropUser(id)
	return nil
}

// Session is a logged-in browser.
type Session struct {
	// ID is the secret cookie value; set only by Login (the store keeps its hash).
	ID         string
	User       User
	CSRFToken  string
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time // absolute end; the idle end is LastSeenAt + SessionIdle
}

// Principal is the principal of a session.
func (s Session) Principal() Principal {
	return Principal{UserID: s.User.ID, Name: s.User.Username, Role: s.User.Role, Carrier: s.User.Carrier}
}

// Login checks a user's password and opens a session. A wrong password and an
// unknown user both give ErrBadLogin after the same work; ErrDisabled is only
// told to someone who knows the password.
func (s *Store) Login(ctx context.Context, username, password, remoteAddr string) (Session, error) {
	if password == "" {
		s.loginFailed(ctx, username, "no password")
		return Session{}, fmt.Errorf("%w: %w", ErrBadLogin, errNoPassword)
	}
	var u User
	var hash string
	err := s.pool.QueryRow(ctx, `SELECT `+userColumns+`, password_hash FROM access_users WHERE username = $1`,
		NormalizeUsername(username)).Scan(append(userFields(&u), &hash)...)
	known := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Session{}, fmt.Errorf("login: %w", err)
	}
	if !known {
		hash = dummyHash()
	}
	ok, err := VerifyPassword(ctx, hash, password)
	if err != nil {
		return Session{}, fmt.Errorf("login %s: %w", u.Username, err)
	}
	if !ok || !known {
		s.loginFailed(ctx, username, "unknown user or wrong password")
		return Session{}, ErrBadLogin
	}
	if u.DisabledAt != nil {
		s.loginFailed(ctx, username, "disabled")
		return Session{}, ErrDisabled
	}

	now := s.now()
	sess := Session{ID: randomToken(32), User: u, CSRFToken: randomToken(32), CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(SessionMax)}
	if len(remoteAddr) > 100 {
		remoteAddr = remoteAddr[:100]
	}
	err = pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		// Expired sessions are swept here, at the rate of logins.
		if _, err := tx.Exec(ctx, `DELETE FROM access_sessions WHERE expires_at <= $1 OR last_seen_at <= $2`,
			now, now.Add(-SessionIdle)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO access_sessions (id_hash, user_id, csrf_token, remote_addr, created_at, last_seen_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $5, $6)`, hashToken(sess.ID), u.ID, sess.CSRFToken, remoteAddr, now, sess.ExpiresAt)
		if err != nil {
			return err
		}
		// The user is the actor of the login: known now the password is checked.
		act := audit.ActorFrom(ctx)
		act.Kind, act.ID, act.Name, act.Role = audit.KindUser, strconv.FormatInt(u.ID, 10), u.Username, u.Role
		return audit.Record(ctx, tx, audit.Entry{Action: audit.ActionLogin, ObjectType: "session", ObjectID: u.Username, Actor: act,
			After: map[string]any{"expires_at": sess.ExpiresAt}})
	})
	if err != nil {
		return Session{}, fmt.Errorf("open session: %w", err)
	}
	return sess, nil
}

// Session returns the live session with this id and marks it as seen, or
// ErrNoSession. A disabled user's sessions are not live.
func (s *Store) Session(ctx context.Context, id string) (Session, error) {
	if id == "" || len(id) > 100 {
		return Session{}, ErrNoSession
	}
	now := s.now()
	key := keyOf(id)
	h := key[:]
	if e, ok := s.cache.get(key, kindSession, now); ok {
		if sess := e.session; sess.ExpiresAt.After(now) && sess.LastSeenAt.After(now.Add(-SessionIdle)) {
			if now.Sub(sess.LastSeenAt) < touchEvery {
				return sess, nil
			}
			gen := s.cache.generation()
			tag, err := s.pool.Exec(ctx, `UPDATE access_sessions SET last_seen_at = $2 WHERE id_hash = $1`, h, now)
			if err != nil {
				return Session{}, fmt.Errorf("session: %w", err)
			}
			if tag.RowsAffected() == 0 { // ended on another node
				s.cache.drop(key)
				return Session{}, ErrNoSession
			}
			sess.LastSeenAt = now
			e.session = sess
			s.cache.update(key, gen, e)
			return sess, nil
		}
		s.cache.drop(key) // ended here by the clock: PostgreSQL has the last word
	}
	gen := s.cache.generation()
	var sess Session
	err := s.pool.QueryRow(ctx, `SELECT u.id, u.username, u.role, u.carrier, u.created_at, u.disabled_at,
			s.csrf_token, s.created_at, s.last_seen_at, s.expires_at
		FROM access_sessions s JOIN access_users u ON u.id = s.user_id
		WHERE s.id_hash = $1 AND u.disabled_at IS NULL AND s.expires_at > $2 AND s.last_seen_at > $3`,
		h, now, now.Add(-SessionIdle)).
		Scan(append(userFields(&sess.User), &sess.CSRFToken, &sess.CreatedAt, &sess.LastSeenAt, &sess.ExpiresAt)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return Session{}, ErrNoSession
	}
	if err != nil {
		return Session{}, fmt.Errorf("session: %w", err)
	}
	if now.Sub(sess.LastSeenAt) >= touchEvery {
		if _, err := s.pool.Exec(ctx, `UPDATE access_sessions SET last_seen_at = $2 WHERE id_hash = $1`, h, now); err != nil {
			return Session{}, fmt.Errorf("session: %w", err)
		}
		sess.LastSeenAt = now
	}
	s.cache.put(key, gen, cacheEntry{kind: kindSession, principal: sess.Principal(), session: sess}, now)
	return sess, nil
}

// Logout ends a session; ending one that does not exist is not an error.
func (s *Store) Logout(ctx context.Context, id string) error {
	if id == "" || len(id) > 100 {
		return nil
	}
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		var user string
		err := tx.QueryRow(ctx, `DELETE FROM access_sessions s USING access_users u
			WHERE s.id_hash = $1 AND u.id = s.user_id RETURNING u.username`, hashToken(id)).Scan(&user)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // no session: nothing happened, nothing to record
		}
		if err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Action: audit.ActionLogout, ObjectType: "session", ObjectID: user})
	})
	if err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	s.cache.drop(keyOf(id))
	return nil
}

// loginFailed records a failed login, a security event, with the name tried
// (never the password). It has no transaction to join: nothing else changed.
func (s *Store) loginFailed(ctx context.Context, username, reason string) {
	act := audit.ActorFrom(ctx)
	if act.Kind == audit.KindSystem {
		act.Kind = audit.KindAnonymous
	}
	name := NormalizeUsername(username)
	if len(name) > 64 {
		name = name[:64]
	}
	// A failed record must not turn a wrong password into a 500: it is
	// logged by the caller's error path only when the database is away.
	_ = audit.Record(ctx, s.pool, audit.Entry{Action: audit.ActionLoginFailed, ObjectType: "user", ObjectID: name, Actor: act,
		After: map[string]any{"reason": reason}})
}

func hashToken(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

// randomToken returns n random bytes, base64url-encoded.
func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Users lists every user by name.
func (s *Store) Users(ctx context.Context) ([]User, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+userColumns+` FROM access_users ORDER BY username`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	us, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (User, error) {
		var u User
		return u, r.Scan(userFields(&u)...)
	})
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return us, nil
}

// UserPatch changes what is set and nothing else.
type UserPatch struct {
	Role     *string
	Carrier  *string
	Disabled *bool
}

// UpdateUser changes a user's role, carrier or whether it is disabled.
// Disabling ends the user's sessions in the same transaction; a changed role
// or carrier applies to the user's next request (the user's cached sessions
// are dropped once it commits).
func (s *Store) UpdateUser(ctx context.Context, username string, p UserPatch) (User, error) {
	var u User
	err := pg.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT `+userColumns+` FROM access_users WHERE username = $1 FOR UPDATE`,
			NormalizeUsername(username)).Scan(userFields(&u)...)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: user %s", ErrNotFound, username)
		}
		if err != nil {
			return fmt.Errorf("update user: %w", err)
		}
		before := u
		role, carrier := u.Role, u.Carrier
		if p.Role != nil {
			role = *p.Role
		}
		if p.Carrier != nil {
			carrier = *p.Carrier
		}
		if carrier, err = checkRoleCarrier(role, carrier); err != nil {
			return err
		}
		disabled := u.DisabledAt
		if p.Disabled != nil {
			switch {
			case *p.Disabled && disabled == nil:
				now := s.now()
				disabled = &now
			case !*p.Disabled:
				disabled = nil
			}
		}
		if u.Role == RoleAdmin && u.DisabledAt == nil && (role != RoleAdmin || disabled != nil) {
			if err := s.keepAnAdmin(ctx, tx, u.ID); err != nil {
				return err
			}
		}
		err = tx.QueryRow(ctx, `UPDATE access_users SET role = $2, carrier = $3, disabled_at = $4 WHERE id = $1 RETURNING `+userColumns,
			u.ID, role, carrier, disabled).Scan(userFields(&u)...)
		if err != nil {
			return fmt.Errorf("update user: %w", err)
		}
		if u.DisabledAt != nil {
			if _, err = tx.Exec(ctx, `DELETE FROM access_sessions WHERE user_id = $1`, u.ID); err != nil {
				return err
			}
		}
		return audit.Record(ctx, tx, audit.Entry{Action: audit.ActionUpdate, ObjectType: "user", ObjectID: u.Username, Before: before, After: u})
	})
	if err != nil {
		return User{}, err
	}
	s.cache.dropUser(u.ID)
	return u, nil
}

// keepAnAdmin refuses to take away the last active admin (besides the one
// with id): nobody could manage users in the dashboard any more. Changes that
// take an admin away are serialized by a transaction lock, so two admins
// cannot disable each other at once.
func (s *Store) keepAnAdmin(ctx context.Context, tx pgx.Tx, id int64) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('access_users_admins'))`); err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	var others int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM access_users WHERE role = $1 AND disabled_at IS NULL AND id <> $2`,
		RoleAdmin, id).Scan(&others); err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	if others == 0 {
		return fmt.Errorf("%w: this is the last active admin; make another user admin first", ErrInvalid)
	}
	return nil
}
