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
	"time"
)

// Firmware updates (docs/ota.md).

// Artifact is an uploaded firmware package.
type Artifact struct {
	ID        int64     `json:"id"`
	Version   string    `json:"version"`
	Models    []string  `json:"models"`
	Notes     string    `json:"notes"`
	Size      int64     `json:"size"`
	SHA256    string    `json:"sha256"`
	Signature string    `json:"signature"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
}

// UploadArtifact uploads a firmware file (read from r) as version for the models.
func (c *Client) UploadArtifact(ctx context.Context, version string, models []string, notes string, r io.Reader) (Artifact, error) {
	q := url.Values{"version": {version}}
	for _, m := range models {
		q.Add("model", m)
	}
	if notes != "" {
		q.Set("notes", notes)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/api/v1/ota/artifacts?"+q.Encode(), r)
	if err != nil {
		return Artifact{}, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := *c.HTTP
	hc.Timeout = 0 // a large file takes its time; ctx bounds it
	resp, err := hc.Do(req)
	if err != nil {
		return Artifact{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Artifact{}, err
	}
	if resp.StatusCode >= 400 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e.Code, e.Message = "http_"+strconv.Itoa(resp.StatusCode), string(bytes.TrimSpace(data))
		}
		return Artifact{}, e
	}
	var a Artifact
	return a, json.Unmarshal(data, &a)
}

// Artifacts lists the artifacts, newest first.
func (c *Client) Artifacts(ctx context.Context) ([]Artifact, error) {
	var out struct {
		Artifacts []Artifact `json:"artifacts"`
	}
	err := c.JSON(ctx, http.MethodGet, "/api/v1/ota/artifacts", nil, &out)
	return out.Artifacts, err
}

// RolloutTargets select the lockers of a rollout.
type RolloutTargets struct {
	Segments []string `json:"segments,omitempty"`
	Models   []string `json:"models,omitempty"`
	Versions []string `json:"versions,omitempty"`
	Lockers  []string `json:"lockers,omitempty"`
}

// MaintenanceWindow is "HH:MM" to "HH:MM" in the locker's local time.
type MaintenanceWindow struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// RolloutPolicy says how a rollout proceeds; zero values take the hub's defaults.
type RolloutPolicy struct {
	Canary       int                `json:"canary,omitempty"`
	Growth       string             `json:"growth,omitempty"` // percent, exponential
	Percent      float64            `json:"percent,omitempty"`
	Factor       float64            `json:"factor,omitempty"`
	Order        string             `json:"order,omitempty"` // random, id
	SuccessPct   float64            `json:"success_pct,omitempty"`
	FailurePct   float64            `json:"failure_pct,omitempty"`
	AbortPct     float64            `json:"abort_pct,omitempty"`
	Approval     bool               `json:"approval,omitempty"`
	Soak         string             `json:"soak,omitempty"` // e.g. "10m"
	HealthFactor float64            `json:"health_factor,omitempty"`
	HealthMargin float64            `json:"health_margin,omitempty"`
	Window       *MaintenanceWindow `json:"window,omitempty"`
	MaxInFlight  int                `json:"max_in_flight,omitempty"`
}

// NewRollout creates a rollout (a draft unless Start).
type NewRollout struct {
	Name       string         `json:"name,omitempty"`
	ArtifactID int64          `json:"artifact_id,omitempty"`
	Version    string         `json:"version,omitempty"`
	Targets    RolloutTargets `json:"targets"`
	Policy     RolloutPolicy  `json:"policy"`
	Start      bool           `json:"start,omitempty"`
}

// Rollout is a rollout as the API returns it.
type Rollout struct {
	ID          int64           `json:"id"`
	Name        string          `json:"name"`
	ArtifactID  int64           `json:"artifact_id"`
	Version     string          `json:"version"`
	State       string          `json:"state"`
	Targets     RolloutTargets  `json:"targets"`
	Policy      json.RawMessage `json:"policy"`
	CurrentWave int             `json:"current_wave"`
	Reason      string          `json:"reason,omitempty"`
	RollbackOf  *int64          `json:"rollback_of,omitempty"`
	CreatedBy   string          `json:"created_by"`
	CreatedAt   time.Time       `json:"created_at"`
	StartedAt   *time.Time      `json:"started_at,omitempty"`
	FinishedAt  *time.Time      `json:"finished_at,omitempty"`
}

// RolloutWave is one wave with its lockers by state.
type RolloutWave struct {
	N         int             `json:"n"`
	Size      int             `json:"size"`
	State     string          `json:"state"`
	SoakUntil *time.Time      `json:"soak_until,omitempty"`
	Counts    map[string]int  `json:"counts"`
	Health    json.RawMessage `json:"health,omitempty"`
}

// RolloutStatus is a rollout's progress.
type RolloutStatus struct {
	Rollout
	Total    int            `json:"total"`
	Counts   map[string]int `json:"counts"`
	Waves    []RolloutWave  `json:"waves"`
	Failures map[string]int `json:"failures"`
}

// RolloutLocker is a locker's update state in a rollout.
type RolloutLocker struct {
	LockerID        string     `json:"locker_id"`
	Wave            int        `json:"wave"`
	State           string     `json:"state"`
	Reason          string     `json:"reason,omitempty"`
	Attempts        int        `json:"attempts"`
	PreviousVersion string     `json:"previous_version"`
	Bytes           int64      `json:"bytes"`
	StateAt         time.Time  `json:"state_at"`
	InstalledAt     *time.Time `json:"installed_at,omitempty"`
}

// CreateRollout creates a rollout.
func (c *Client) CreateRollout(ctx context.Context, n NewRollout) (Rollout, error) {
	var out Rollout
	err := c.JSON(ctx, http.MethodPost, "/api/v1/ota/rollouts", n, &out)
	return out, err
}

// Rollouts lists rollouts, newest first.
func (c *Client) Rollouts(ctx context.Context) ([]Rollout, error) {
	var out struct {
		Rollouts []Rollout `json:"rollouts"`
	}
	err := c.JSON(ctx, http.MethodGet, "/api/v1/ota/rollouts", nil, &out)
	return out.Rollouts, err
}

// RolloutStatus returns a rollout's progress.
func (c *Client) RolloutStatus(ctx context.Context, id int64) (RolloutStatus, error) {
	var out RolloutStatus
	err := c.JSON(ctx, http.MethodGet, fmt.Sprintf("/api/v1/ota/rollouts/%d", id), nil, &out)
	return out, err
}

// RolloutLockers lists a rollout's lockers, optionally of one state or wave.
func (c *Client) RolloutLockers(ctx context.Context, id int64, state string, wave int) ([]RolloutLocker, error) {
	q := url.Values{"limit": {"20000"}}
	if state != "" {
		q.Set("state", state)
	}
	if wave > 0 {
		q.Set("wave", strconv.Itoa(wave))
	}
	var out struct {
		Lockers []RolloutLocker `json:"lockers"`
	}
	err := c.JSON(ctx, http.MethodGet, fmt.Sprintf("/api/v1/ota/rollouts/%d/lockers?%s", id, q.Encode()), nil, &out)
	return out.Lockers, err
}

// RolloutAction is start, pause, resume, cancel, approve or rollback (which
// returns the new rollout).
func (c *Client) RolloutAction(ctx context.Context, id int64, action, reason string) (Rollout, error) {
	var in any
	if reason != "" {
		in = map[string]string{"reason": reason}
	}
	var out Rollout
	err := c.JSON(ctx, http.MethodPost, fmt.Sprintf("/api/v1/ota/rollouts/%d/%s", id, action), in, &out)
	return out, err
}
