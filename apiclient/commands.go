package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Command is a command to a locker as the API returns it.
type Command struct {
	ID             string          `json:"id"`
	LockerID       string          `json:"locker_id"`
	Method         string          `json:"method"`
	Params         json.RawMessage `json:"params"`
	State          string          `json:"state"` // pending, sent, succeeded, failed, expired, unconfirmed
	CreatedBy      string          `json:"created_by"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	NotAfter       time.Time       `json:"not_after"`
	CreatedAt      time.Time       `json:"created_at"`
	SentAt         *time.Time      `json:"sent_at,omitempty"`
	Attempts       int             `json:"attempts"`
	AnsweredAt     *time.Time      `json:"answered_at,omitempty"`
	ConfirmedAt    *time.Time      `json:"confirmed_at,omitempty"`
	FinishedAt     *time.Time      `json:"finished_at,omitempty"`
	Result         json.RawMessage `json:"result,omitempty"`
	Error          *CommandError   `json:"error,omitempty"`

	// Replayed is true when the idempotency key had been used before: this is
	// the first command, not a new one (from the Idempotent-Replayed header).
	Replayed bool `json:"-"`
}

// CommandError says why a command did not succeed.
type CommandError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Final reports whether the command's state is final.
func (c Command) Final() bool { return c.State != "pending" && c.State != "sent" }

// NewCommand is the body of POST /api/v1/lockers/{id}/commands.
type NewCommand struct {
	Method         string          `json:"method,omitempty"`
	Params         json.RawMessage `json:"params,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	NotAfter       *time.Time      `json:"not_after,omitempty"`
	ValidFor       string          `json:"valid_for,omitempty"` // e.g. "30s"
}

func waitQuery(wait time.Duration) string {
	if wait <= 0 {
		return ""
	}
	return "?wait=" + url.QueryEscape(wait.String())
}

func (c *Client) postCommand(ctx context.Context, path string, in NewCommand, wait time.Duration) (Command, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return Command{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+path+waitQuery(wait), bytes.NewReader(body))
	if err != nil {
		return Command{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return Command{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Command{}, fmt.Errorf("POST %s: reading response: %w", path, err)
	}
	if resp.StatusCode >= 400 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e.Code, e.Message = "http_"+strconv.Itoa(resp.StatusCode), strings.TrimSpace(string(data))
		}
		return Command{}, e
	}
	var cmd Command
	if err := json.Unmarshal(data, &cmd); err != nil {
		return Command{}, fmt.Errorf("POST %s: decoding response: %w", path, err)
	}
	cmd.Replayed = resp.Header.Get("Idempotent-Replayed") == "true"
	return cmd, nil
}

// SendCommand creates a command (POST /api/v1/lockers/{id}/commands); with
// wait > 0 the hub waits up to that long for a final state.
func (c *Client) SendCommand(ctx context.Context, lockerID string, in NewCommand, wait time.Duration) (Command, error) {
	return c.postCommand(ctx, "/api/v1/lockers/"+url.PathEscape(lockerID)+"/commands", in, wait)
}

// OpenCell sends cell.open (POST /api/v1/lockers/{id}/cells/{cell}/open).
func (c *Client) OpenCell(ctx context.Context, lockerID, cell, idempotencyKey string, wait time.Duration) (Command, error) {
	return c.postCommand(ctx, "/api/v1/lockers/"+url.PathEscape(lockerID)+"/cells/"+url.PathEscape(cell)+"/open",
		NewCommand{IdempotencyKey: idempotencyKey}, wait)
}

// Command returns one command (GET /api/v1/commands/{id}); with wait > 0 the
// hub waits up to that long for a final state.
func (c *Client) Command(ctx context.Context, id string, wait time.Duration) (Command, error) {
	var cmd Command
	err := c.JSON(ctx, http.MethodGet, "/api/v1/commands/"+url.PathEscape(id)+waitQuery(wait), nil, &cmd)
	return cmd, err
}

// CommandFilter selects commands; empty fields select all.
type CommandFilter struct {
	Locker, State string
	Limit         int // 0: the hub's default (100)
}

// Commands lists commands, newest first (GET /api/v1/commands).
func (c *Client) Commands(ctx context.Context, f CommandFilter) ([]Command, error) {
	q := url.Values{}
	if f.Locker != "" {
		q.Set("locker", f.Locker)
	}
	if f.State != "" {
		q.Set("state", f.State)
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	path := "/api/v1/commands"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out struct {
		Commands []Command `json:"commands"`
	}
	err := c.JSON(ctx, http.MethodGet, path, nil, &out)
	return out.Commands, err
}
