// Package protocol is the device contract: topics, payload types, RPC methods
// and error codes shared by the hub and lockers (docs/protocol.md is its prose).
package protocol

import (
	"errors"
	"fmt"
	"strings"
)

// Kind is the last part of a locker topic, lockers/{id}/{kind}.
type Kind string

// Topic kinds. The first group is published by lockers, the second by the hub.
const (
	KindTelemetry Kind = "telemetry"
	KindState     Kind = "state"
	KindEvents    Kind = "events"
	KindRPCRes    Kind = "rpc/res"
	KindAskReq    Kind = "ask/req"
	KindOTAStatus Kind = "ota/status"

	KindRPCReq  Kind = "rpc/req"
	KindAskRes  Kind = "ask/res"
	KindDesired Kind = "desired"
)

// DeviceKinds are the kinds a locker publishes; HubKinds those the hub publishes.
var (
	DeviceKinds = []Kind{KindTelemetry, KindState, KindEvents, KindRPCRes, KindAskReq, KindOTAStatus}
	HubKinds    = []Kind{KindRPCReq, KindAskRes, KindDesired}
)

// TopicPrefix is the first level of every locker topic.
const TopicPrefix = "lockers/"

// MaxLockerIDLen bounds a locker ID (it is also a certificate CN, max 64).
const MaxLockerIDLen = 64

// ErrTopic is wrapped by every topic parsing error.
var ErrTopic = errors.New("invalid topic")

// FromDevice reports whether lockers publish this kind.
func (k Kind) FromDevice() bool {
	for _, d := range DeviceKinds {
		if k == d {
			return true
		}
	}
	return false
}

// FromHub reports whether the hub publishes this kind.
func (k Kind) FromHub() bool {
	for _, h := range HubKinds {
		if k == h {
			return true
		}
	}
	return false
}

// Topic returns lockers/{id}/{kind}.
func Topic(lockerID string, k Kind) string {
	return TopicPrefix + lockerID + "/" + string(k)
}

// ValidateLockerID checks a locker ID: 1–64 characters of A–Z, a–z, 0–9, '-', '_' and '.',
// starting with a letter or digit. The ID is the MQTT client ID and the certificate CN.
func ValidateLockerID(id string) error {
	if id == "" {
		return errors.New("locker id is empty")
	}
	if len(id) > MaxLockerIDLen {
		return fmt.Errorf("locker id is longer than %d characters", MaxLockerIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '-' || c == '_' || c == '.') && i > 0:
		default:
			return fmt.Errorf("locker id %q: character %q at %d is not allowed (use A-Z a-z 0-9 - _ .)", id, c, i)
		}
	}
	return nil
}

// ParseTopic splits lockers/{id}/{kind} and checks both parts.
func ParseTopic(topic string) (lockerID string, k Kind, err error) {
	rest, ok := strings.CutPrefix(topic, TopicPrefix)
	if !ok {
		return "", "", fmt.Errorf("%w: %q does not start with %q", ErrTopic, topic, TopicPrefix)
	}
	id, kind, ok := strings.Cut(rest, "/")
	if !ok {
		return "", "", fmt.Errorf("%w: %q has no kind", ErrTopic, topic)
	}
	if err := ValidateLockerID(id); err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrTopic, err)
	}
	k = Kind(kind)
	if !k.FromDevice() && !k.FromHub() {
		return "", "", fmt.Errorf("%w: unknown kind %q", ErrTopic, kind)
	}
	return id, k, nil
}

// MayPublish is the broker's publish ACL: a locker publishes only the device kinds
// of its own topic tree.
func MayPublish(clientID, topic string) bool {
	id, k, err := ParseTopic(topic)
	return err == nil && id == clientID && k.FromDevice()
}

// MaySubscribe is the broker's subscribe ACL: a locker subscribes only to filters
// inside its own tree, lockers/{id}/…; wildcards are allowed below the ID, never
// in it, and shared subscriptions are refused.
func MaySubscribe(clientID, filter string) bool {
	if ValidateLockerID(clientID) != nil {
		return false
	}
	rest, ok := strings.CutPrefix(filter, TopicPrefix+clientID+"/")
	if !ok || rest == "" {
		return false
	}
	levels := strings.Split(rest, "/")
	for i, l := range levels {
		if l == "" {
			return false
		}
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return false
		}
		if strings.Contains(l, "+") && l != "+" {
			return false
		}
	}
	return true
}

// FilterMatches reports whether an MQTT topic filter (with + and #) matches a
// topic name.
func FilterMatches(filter, topic string) bool {
	f, t := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, l := range f {
		if l == "#" {
			return true
		}
		if i >= len(t) || (l != "+" && l != t[i]) {
			return false
		}
	}
	return len(f) == len(t)
}
