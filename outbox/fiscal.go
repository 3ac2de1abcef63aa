package outbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// FiscalConfig is the cloud fiscal service of the fiscal channel: receipts of
// payments taken at lockers (docs/operations.md "Fiscal receipts"). Each
// receipt is POSTed as JSON with the message id (the payment id) in
// Idempotency-Key, so the service issues one receipt per payment however
// often a retry repeats it.
type FiscalConfig struct {
	URL     string        // empty: the channel is not configured and receipts wait
	Token   string        // bearer token, optional
	Timeout time.Duration // one request; 0: the dispatcher's RequestTimeout (10 s)
}

// IdempotencyHeader carries a fiscal receipt's id.
const IdempotencyHeader = "Idempotency-Key"

func (d *Dispatcher) sendFiscal(ctx context.Context, m *claimed) error {
	if d.cfg.Fiscal.URL == "" {
		return waiting("not_configured", "the fiscal service is not configured (--fiscal-url)")
	}
	body, err := json.Marshal(m.Data)
	if err != nil {
		return permanent("encode", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.cfg.Fiscal.URL, bytes.NewReader(body))
	if err != nil {
		return permanent("config", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "lockerhub-fiscal/1")
	req.Header.Set(IdempotencyHeader, m.ID)
	req.Header.Set(DeliveryHeader, m.ID)
	if d.cfg.Fiscal.Token != "" {
		req.Header.Set("Authorization", "Bearer "+d.cfg.Fiscal.Token)
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		// The service's receipt number, when it answers one, is kept and shown.
		var r struct {
			ReceiptID string `json:"receipt_id"`
			ID        string `json:"id"`
		}
		if json.Unmarshal(head, &r) == nil {
			if r.ReceiptID == "" {
				r.ReceiptID = r.ID
			}
			m.rendered = truncate(strings.TrimSpace(r.ReceiptID))
		}
		return nil
	case resp.StatusCode == http.StatusConflict || resp.StatusCode == http.StatusRequestTimeout ||
		resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		// 409: the same key is still being processed there; ask again.
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(head[:min(len(head), 256)])))
	default:
		return refused(fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(head[:min(len(head), 256)]))))
	}
}

// FiscalReceipt is a fiscal message's delivery and the service's receipt number.
type FiscalReceipt struct {
	Delivery
	Number string
}

// FiscalReceipts returns the fiscal messages with the given ids.
func FiscalReceipts(ctx context.Context, q Querier, ids []string) (map[string]FiscalReceipt, error) {
	rows, err := q.Query(ctx, `SELECT id, channel, state, attempts, coalesce(last_error, ''), sent_at, coalesce(rendered, '')
		FROM outbox_messages WHERE id = ANY($1) AND channel = 'fiscal'`, ids)
	if err != nil {
		return nil, fmt.Errorf("fiscal receipts: %w", err)
	}
	defer rows.Close()
	out := map[string]FiscalReceipt{}
	for rows.Next() {
		var r FiscalReceipt
		if err := rows.Scan(&r.ID, &r.Channel, &r.State, &r.Attempts, &r.LastError, &r.SentAt, &r.Number); err != nil {
			return nil, fmt.Errorf("fiscal receipts: %w", err)
		}
		if r.SentAt != nil {
			u := r.SentAt.UTC()
			r.SentAt = &u
		}
		out[r.ID] = r
	}
	return out, rows.Err()
}
