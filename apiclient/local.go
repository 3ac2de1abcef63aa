package apiclient

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Files a running hub writes into its data directory for local tools.
const (
	HubInfoFile       = "hub.json"       // Local, written at every start
	AdminTokenFile    = "admin.token"    // the admin bearer token, mode 0600
	AdminPasswordFile = "admin.password" // the dashboard password of user "admin", mode 0600
	CAFile            = "ca.crt"         // the hub CA certificate (PEM)
)

// Local tells local tools (hubctl, lockersim) where a hub on this machine listens.
type Local struct {
	HTTP   string `json:"http"`   // e.g. http://127.0.0.1:8080
	MQTT   string `json:"mqtt"`   // e.g. 127.0.0.1:8883
	Device string `json:"device"` // e.g. https://127.0.0.1:8443
}

// ReadLocal reads dataDir/hub.json and dataDir/admin.token. Either may be missing:
// the error says which and what to do.
func ReadLocal(dataDir string) (Local, string, error) {
	var l Local
	data, err := os.ReadFile(filepath.Join(dataDir, HubInfoFile))
	if err != nil {
		return l, "", fmt.Errorf("no local hub found in %s (%v): start one with `make run` or pass --server/--token", dataDir, err)
	}
	if err := json.Unmarshal(data, &l); err != nil {
		return l, "", fmt.Errorf("%s: %w", filepath.Join(dataDir, HubInfoFile), err)
	}
	tok, err := os.ReadFile(filepath.Join(dataDir, AdminTokenFile))
	if err != nil {
		return l, "", fmt.Errorf("no admin credential in %s (%v): pass --token or HUBCTL_TOKEN", dataDir, err)
	}
	return l, strings.TrimSpace(string(tok)), nil
}
