package web_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lockerhub/lockerhub/apiclient"
	"github.com/lockerhub/lockerhub/fleet"
	"github.com/lockerhub/lockerhub/hubtest"
	"github.com/lockerhub/lockerhub/ota"
	"github.com/lockerhub/lockerhub/pki"
	"github.com/lockerhub/lockerhub/protocol"
	"github.com/lockerhub/lockerhub/web"
)

// TestEveryChangeIsAudited walks every route that changes something (every
// method but GET, and the device routes) and checks that a successful call
// writes at least one audit record naming the caller. A new route fails
// here until it has a case below: record its change with audit.Record in
// the change's transaction (see audit's package comment), then add it.
func TestEveryChangeIsAudited(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()
	h.AddLocker("EV-1")
	h.AddLocker("EV-2")
	_, err := h.Admin.CreateModel(ctx, apiclient.NewModel{ID: "ev-m", Manufacturer: "M", Name: "N", Layout: []apiclient.Cell{{Name: "A01", Size: "S"}}})
	require.NoError(t, err)
	csr, _, err := pki.NewKeyAndCSR("EV-1")
	require.NoError(t, err)
	dev := h.IssueCert("EV-2")
	deviceTLS := &tls.Config{RootCAs: h.CAPool(), ServerName: "127.0.0.1"}

	type result struct {
		status  int
		actor   string // actor name expected on the record
		objType string
	}
	admin := func(method, path, body string, want int, objType string) func() result {
		return func() result {
			status, out := call(t, method, h.HTTPURL+path, h.AdminToken, body)
			require.Equal(t, want, status, "%s %s: %v", method, path, out)
			return result{status, "admin", objType}
		}
	}
	hookClient, hookToken, err := h.App.Access.CreateClient(ctx, "ev-hook", "acme", []string{"parcels:write"})
	require.NoError(t, err)
	// Two webhooks of ev-hook delivered before, to replay.
	for _, id := range []string{"ev-d1", "ev-d2"} {
		_, err := h.App.Pool.Exec(ctx, `INSERT INTO outbox_messages (id, channel, client_id, template, state, sent_at) VALUES ($1, 'webhook', $2, 'parcel.reserved', 'sent', now())`, id, hookClient.ID)
		require.NoError(t, err)
	}
	client := func(method, path, body string, want int, objType string) func() result {
		return func() result {
			status, out := call(t, method, h.HTTPURL+path, hookToken, body)
			require.Equal(t, want, status, "%s %s: %v", method, path, out)
			return result{status, "ev-hook", objType}
		}
	}

	// Parcels need a locker whose twin reports free cells: EV-1's reports,
	// as its broker connection would hand them to the twins.
	var seq uint64
	report := func(cell, door string, occupied bool) {
		seq++
		payload := fmt.Sprintf(`{"boot":1,"seq":%d,"ts":%d,"cells":{%q:{"door":%q,"occupied":%v}}}`, seq, time.Now().UnixMilli(), cell, door, occupied)
		done := make(chan error, 1)
		h.App.Twins.Submit(fleet.Inbound{LockerID: "EV-1", Kind: protocol.KindState, Payload: []byte(payload), Received: time.Now(),
			Done: func(err error) { done <- err }})
		require.NoError(t, <-done)
	}
	for i := 1; i <= 8; i++ {
		report(fmt.Sprintf("A%02d", i), "closed", false)
	}
	var watcher *hubtest.Viewer
	newParcel := func() apiclient.Parcel {
		p, err := h.Admin.CreateParcel(ctx, apiclient.NewParcel{Locker: "EV-1", Size: "M", Recipient: apiclient.Recipient{Phone: "+4917000000"}}, "")
		require.NoError(t, err)
		return p
	}
	var firstParcel apiclient.Parcel
	// Alarms: three tamper events as the ingest stores them (the alarms'
	// trigger takes them), one alarm each to acknowledge, mute and resolve.
	for i, l := range []string{"EV-1", "EV-2", "EV-1"} {
		_, err := h.App.Pool.Exec(ctx, `INSERT INTO fleet_events (locker_id, event_id, boot, seq, ts, type, cell, received_at) VALUES ($1, $2, 1, $3, now(), 'tamper', $4, now())`,
			l, fmt.Sprintf("ev-t%d", i), i+1, fmt.Sprintf("C%d", i))
		require.NoError(t, err)
	}
	var alarmIDs []int64
	hubtest.Eventually(t, 10*time.Second, "three alarms", func() bool {
		rows, err := h.App.Pool.Query(ctx, `SELECT id FROM alarms_alarms ORDER BY id`)
		require.NoError(t, err)
		alarmIDs = alarmIDs[:0]
		for rows.Next() {
			var id int64
			require.NoError(t, rows.Scan(&id))
			alarmIDs = append(alarmIDs, id)
		}
		return len(alarmIDs) == 3
	})
	var silenceID string
	// Firmware updates: an artifact, another one to roll back to, and a
	// locker of its own for each rollout action.
	for _, id := range []string{"EV-O1", "EV-O2", "EV-O3", "EV-O4", "EV-O5", "EV-O6"} {
		h.AddLocker(id)
	}
	art, err := h.App.OTA.Upload(ctx, ota.NewArtifact{Version: "9.9.9"}, strings.NewReader("firmware"))
	require.NoError(t, err)
	_, err = h.App.OTA.Upload(ctx, ota.NewArtifact{Version: "0.9"}, strings.NewReader("old firmware"))
	require.NoError(t, err)
	rollout := func(locker string, start bool, p ota.Policy) int64 {
		r, err := h.App.OTA.Create(ctx, ota.NewRollout{ArtifactID: art.ID, Targets: ota.Targets{Lockers: []string{locker}}, Policy: p, Start: start})
		require.NoError(t, err)
		return r.ID
	}
	otaAction := func(locker, action string, prepare func(id int64)) func() result {
		return func() result {
			id := rollout(locker, action != "start", ota.Policy{})
			if prepare != nil {
				prepare(id)
			}
			want := 200
			if action == "rollback" {
				want = 201
			}
			return admin("POST", fmt.Sprintf("/api/v1/ota/rollouts/%d/%s", id, action), "", want, "ota_rollout")()
		}
	}
	exec := func(sql string, args ...any) {
		_, err := h.App.Pool.Exec(ctx, sql, args...)
		require.NoError(t, err)
	}
	_, err = h.App.Registry.CreateCarrier(ctx, fleet.NewCarrier{ID: "ev-c2"})
	require.NoError(t, err)
	cases := map[string]func() result{
		"POST /api/v1/carriers":                                admin("POST", "/api/v1/carriers", `{"id":"ev-c1","name":"EV One"}`, 201, "carrier"),
		"PATCH /api/v1/carriers/{carrier}":                     admin("PATCH", "/api/v1/carriers/ev-c1", `{"contact":"ops@ev.example"}`, 200, "carrier"),
		"DELETE /api/v1/carriers/{carrier}":                    admin("DELETE", "/api/v1/carriers/ev-c1", "", 204, "carrier"),
		"PUT /api/v1/carriers/{carrier}/lockers/{locker}":      admin("PUT", "/api/v1/carriers/ev-c2/lockers/EV-2", "", 200, "locker"),
		"DELETE /api/v1/carriers/{carrier}/lockers/{locker}":   admin("DELETE", "/api/v1/carriers/ev-c2/lockers/EV-2", "", 200, "locker"),
		"PUT /api/v1/carriers/{carrier}/segments/{segment}":    admin("PUT", "/api/v1/carriers/ev-c2/segments/ev-north", "", 200, "carrier"),
		"DELETE /api/v1/carriers/{carrier}/segments/{segment}": admin("DELETE", "/api/v1/carriers/ev-c2/segments/ev-north", "", 200, "carrier"),
		"PUT /api/v1/carriers/{carrier}/quotas/{locker}":       admin("PUT", "/api/v1/carriers/ev-c2/quotas/EV-2", `{"cells":{"M":1}}`, 200, "carrier"),
		"DELETE /api/v1/carriers/{carrier}/quotas/{locker}":    admin("DELETE", "/api/v1/carriers/ev-c2/quotas/EV-2", "", 200, "carrier"),
		"POST /api/v1/ota/artifacts":                           admin("POST", "/api/v1/ota/artifacts?version=9.9.10", "new firmware", 201, "ota_artifact"),
		"POST /api/v1/ota/rollouts": admin("POST", "/api/v1/ota/rollouts",
			fmt.Sprintf(`{"artifact_id":%d,"targets":{"lockers":["EV-O1"]}}`, art.ID), 201, "ota_rollout"),
		"POST /api/v1/ota/rollouts/{id}/start": otaAction("EV-O1", "start", nil),
		"POST /api/v1/ota/rollouts/{id}/pause": otaAction("EV-O2", "pause", nil),
		"POST /api/v1/ota/rollouts/{id}/resume": otaAction("EV-O3", "resume", func(id int64) {
			_, err := h.App.OTA.Pause(ctx, id, "")
			require.NoError(t, err)
		}),
		"POST /api/v1/ota/rollouts/{id}/cancel": otaAction("EV-O4", "cancel", nil),
		"POST /api/v1/ota/rollouts/{id}/approve": otaAction("EV-O5", "approve", func(id int64) {
			exec(`UPDATE ota_waves SET state = 'awaiting_approval' WHERE rollout_id = $1`, id)
		}),
		"POST /api/v1/ota/rollouts/{id}/rollback": otaAction("EV-O6", "rollback", func(id int64) {
			exec(`UPDATE ota_lockers SET state = 'installed', previous_version = '0.9' WHERE rollout_id = $1`, id)
		}),
		"POST /api/v1/alarms/{id}/ack": func() result {
			return admin("POST", fmt.Sprintf("/api/v1/alarms/%d/ack", alarmIDs[0]), `{"note":"n"}`, 200, "alarm")()
		},
		"POST /api/v1/alarms/{id}/mute": func() result {
			return admin("POST", fmt.Sprintf("/api/v1/alarms/%d/mute", alarmIDs[1]), "", 200, "alarm")()
		},
		"POST /api/v1/alarms/{id}/resolve": func() result {
			return admin("POST", fmt.Sprintf("/api/v1/alarms/%d/resolve", alarmIDs[2]), "", 200, "alarm")()
		},
		"POST /api/v1/alarms/silences": func() result {
			status, out := call(t, "POST", h.HTTPURL+"/api/v1/alarms/silences", h.AdminToken, fmt.Sprintf(`{"matchers":[{"name":"locker","op":"=","value":"EV-1"}],"ends_at":%q}`, time.Now().Add(time.Hour).UTC().Format(time.RFC3339)))
			require.Equal(t, 201, status, "%v", out)
			silenceID = fmt.Sprint(out["id"])
			return result{status, "admin", "alarm_silence"}
		},
		// Watching a simulated locker's camera (WHEP), then leaving.
		"POST /api/v1/lockers/{id}/video/whep": func() result {
			simLockers(t, h, "EVV-", 1)
			watcher = hubtest.NewViewer(t)
			status, body := watcher.WHEP(t, h.HTTPURL+"/api/v1/lockers/EVV-00001/video/whep", h.AdminToken)
			require.Equal(t, 201, status, body)
			return result{201, "admin", "video"}
		},
		"DELETE /api/v1/lockers/{id}/video/whep/{viewer}": func() result {
			require.Equal(t, 204, watcher.Leave(t, h.HTTPURL, h.AdminToken))
			return result{204, "admin", "video"}
		},
		"DELETE /api/v1/alarms/silences/{id}": func() result {
			return admin("DELETE", "/api/v1/alarms/silences/"+silenceID, "", 204, "alarm_silence")()
		},
		"PUT /api/v1/alarms/rules":   admin("PUT", "/api/v1/alarms/rules", `{"rules":[{"kind":"offline","enabled":true,"for":"10m"}]}`, 200, "alarm_rules"),
		"PUT /api/v1/alarms/routing": admin("PUT", "/api/v1/alarms/routing", `{"receivers":[],"route":{"group_by":["segment"]}}`, 200, "alarm_routing"),
		"POST /api/v1/parcels": func() result {
			firstParcel = newParcel()
			return result{201, "admin", "parcel"}
		},
		"POST /api/v1/connectors/{name}/orders": admin("POST", "/api/v1/connectors/xml-orders/orders",
			`<order id="EV-O1"><locker>EV-1</locker><size>M</size><recipient><phone>+4917000000</phone></recipient></order>`, 201, "parcel"),
		"POST /api/v1/connectors/{name}/cancel": func() result {
			admin("POST", "/api/v1/connectors/xml-orders/orders",
				`<order id="EV-O2"><locker>EV-1</locker><size>M</size><recipient><phone>+4917000000</phone></recipient></order>`, 201, "parcel")()
			return admin("POST", "/api/v1/connectors/xml-orders/cancel", `<cancel order="EV-O2"/>`, 200, "parcel")()
		},
		"POST /api/v1/parcels/{id}/cancel": func() result {
			return admin("POST", "/api/v1/parcels/"+firstParcel.ID+"/cancel", `{"reason":"test"}`, 200, "parcel")()
		},
		"POST /api/v1/parcels/{id}/dropoff": func() result {
			return admin("POST", "/api/v1/parcels/"+newParcel().ID+"/dropoff", "", 202, "parcel")()
		},
		"POST /api/v1/parcels/{id}/collect": func() result {
			p := newParcel()
			_, err := h.Admin.DropoffParcel(ctx, p.ID)
			require.NoError(t, err)
			report(p.Cell, "open", false)
			report(p.Cell, "closed", true)
			hubtest.Eventually(t, 10*time.Second, "deposited", func() bool {
				got, err := h.Admin.Parcel(ctx, p.ID)
				require.NoError(t, err)
				return got.State == "deposited"
			})
			_, err = h.Admin.CancelParcel(ctx, p.ID, "return it")
			require.NoError(t, err)
			var before int64
			require.NoError(t, h.App.Pool.QueryRow(ctx, `SELECT max(id) FROM audit_log`).Scan(&before))
			res := admin("POST", "/api/v1/parcels/"+p.ID+"/collect", "", 202, "parcel")()
			var n int
			require.NoError(t, h.App.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE id > $1 AND object_type = 'parcel'`, before).Scan(&n))
			require.Positive(t, n, "the collection itself is audited")
			return res
		},
		"PATCH /api/v1/parcels/{id}": func() result {
			return admin("PATCH", "/api/v1/parcels/"+newParcel().ID, `{"recipient":{"phone":"+4917000001"}}`, 200, "parcel")()
		},
		"POST /api/v1/parcels/{id}/move": func() result {
			p := newParcel()
			_, err := h.Admin.DropoffParcel(ctx, p.ID)
			require.NoError(t, err)
			report(p.Cell, "open", false)
			report(p.Cell, "closed", true)
			hubtest.Eventually(t, 10*time.Second, "deposited", func() bool {
				got, err := h.Admin.Parcel(ctx, p.ID)
				require.NoError(t, err)
				return got.State == "deposited"
			})
			free, _ := h.App.Overview.FreeCellNames("EV-1", "M")
			require.NotEmpty(t, free)
			return admin("POST", "/api/v1/parcels/"+p.ID+"/move", fmt.Sprintf(`{"cell":%q}`, free[0]), 202, "parcel")()
		},
		"POST /api/v1/lockers/{id}/cells/{cell}/service-open": admin("POST", "/api/v1/lockers/EV-1/cells/A08/service-open", "", 202, "cell"),
		"POST /api/v1/lockers/{id}/service-codes":             admin("POST", "/api/v1/lockers/EV-1/service-codes", `{"cell":"A08"}`, 201, "service_code"),
		"POST /api/v1/returns":                                admin("POST", "/api/v1/returns", `{"locker":"EV-1","size":"M","sender":{"phone":"+4917000002"}}`, 201, "parcel"),
		"POST /api/v1/lockers":                                admin("POST", "/api/v1/lockers", `{"id":"EV-3","cells":2}`, 201, "locker"),
		"PATCH /api/v1/lockers/{id}":                          admin("PATCH", "/api/v1/lockers/EV-3", `{"address":"x"}`, 200, "locker"),
		"DELETE /api/v1/lockers/{id}":                         admin("DELETE", "/api/v1/lockers/EV-3", "", 200, "locker"),
		"PUT /api/v1/lockers/{id}/desired":                    admin("PUT", "/api/v1/lockers/EV-1/desired", `{"config":{"a":1}}`, 200, "desired"),
		"POST /api/v1/lockers/import": func() result {
			status, out := send(t, "POST", h.HTTPURL+"/api/v1/lockers/import", h.AdminToken, "text/csv", "id,cells\nEV-4,2\n")
			require.Equal(t, 201, status, out)
			return result{status, "admin", "locker"}
		},
		"POST /api/v1/lockers/{id}/certificates": func() result {
			_, err := h.Admin.IssueCertificate(ctx, "EV-1", csr)
			require.NoError(t, err)
			return result{200, "admin", "certificate"}
		},
		"POST /api/v1/lockers/{id}/certificates/revoke": admin("POST", "/api/v1/lockers/EV-1/certificates/revoke", "", 200, "certificate"),
		"POST /api/v1/lockers/{id}/enroll-tokens":       admin("POST", "/api/v1/lockers/EV-1/enroll-tokens", `{}`, 201, "enroll_token"),
		"POST /api/v1/lockers/{id}/commands":            admin("POST", "/api/v1/lockers/EV-1/commands", `{"method":"locker.reboot"}`, 202, "command"),
		"POST /api/v1/lockers/{id}/cells/{cell}/open":   admin("POST", "/api/v1/lockers/EV-1/cells/A01/open", "", 202, "command"),
		"POST /api/v1/models":                           admin("POST", "/api/v1/models", `{"id":"ev-n","manufacturer":"M","name":"N","layout":[{"name":"A01","size":"S"}]}`, 201, "model"),
		"PUT /api/v1/models/{id}":                       admin("PUT", "/api/v1/models/ev-n", `{"manufacturer":"M2","name":"N","layout":[{"name":"A01","size":"S"}]}`, 200, "model"),
		"DELETE /api/v1/models/{id}":                    admin("DELETE", "/api/v1/models/ev-n", "", 204, "model"),
		"POST /api/v1/session": func() result {
			h.LoginAdmin()
			return result{200, "admin", "session"}
		},
		"DELETE /api/v1/session": func() result {
			s := h.LoginAdmin()
			req, _ := http.NewRequest("DELETE", h.HTTPURL+"/api/v1/session", nil)
			req.Header.Set(web.CSRFHeader, s.CSRF)
			resp, err := s.Client.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, 204, resp.StatusCode)
			return result{204, "admin", "session"}
		},
		"POST /api/v1/users":                                               admin("POST", "/api/v1/users", `{"username":"ev-user","password":"a long enough password","role":"viewer"}`, 201, "user"),
		"PATCH /api/v1/users/{name}":                                       admin("PATCH", "/api/v1/users/ev-user", `{"role":"technician"}`, 200, "user"),
		"POST /api/v1/users/{name}/password":                               admin("POST", "/api/v1/users/ev-user/password", `{"password":"another long password"}`, 200, "user"),
		"POST /api/v1/clients":                                             admin("POST", "/api/v1/clients", `{"name":"ev-client","carrier":"acme","scopes":["lockers:read"]}`, 201, "client"),
		"DELETE /api/v1/clients/{name}":                                    admin("DELETE", "/api/v1/clients/ev-client", "", 200, "client"),
		"PATCH /api/v1/clients/{name}":                                     admin("PATCH", "/api/v1/clients/ev-client", `{"reservation_hours":24}`, 200, "client"),
		"POST /api/v1/webhook/deliveries/{delivery}/replay":                client("POST", "/api/v1/webhook/deliveries/ev-d1/replay", "", 202, "webhook_delivery"),
		"POST /api/v1/clients/{name}/webhook-deliveries/{delivery}/replay": admin("POST", "/api/v1/clients/ev-hook/webhook-deliveries/ev-d2/replay", "", 202, "webhook_delivery"),
		"PUT /api/v1/webhook":                                              client("PUT", "/api/v1/webhook", `{"url":"https://shop.example.com/hook"}`, 200, "webhook_endpoint"),
		"DELETE /api/v1/webhook":                                           client("DELETE", "/api/v1/webhook", "", 204, "webhook_endpoint"),
		"POST /api/v1/tokens":                                              admin("POST", "/api/v1/tokens", `{"name":"ev-token"}`, 201, "token"),
		"DELETE /api/v1/tokens/{id}": func() result {
			tok, _, err := h.App.Access.NewAdminToken(ctx, "ev-revoke")
			require.NoError(t, err)
			return admin("DELETE", fmt.Sprintf("/api/v1/tokens/%d", tok.ID), "", 200, "token")()
		},
		"POST /api/v1/enroll": func() result {
			tok, err := h.Admin.CreateEnrollToken(ctx, "EV-2", 0)
			require.NoError(t, err)
			c := apiclient.NewTLS(h.DeviceURL, "", deviceTLS)
			csr, _, err := pki.NewKeyAndCSR("EV-2")
			require.NoError(t, err)
			_, err = c.Enroll(ctx, tok.Token, csr)
			require.NoError(t, err)
			return result{200, "EV-2", "certificate"}
		},
		"PUT /api/v1/templates/{event}/{channel}":    admin("PUT", "/api/v1/templates/parcel_ready/sms?carrier=acme", `{"body":"Code {{.code}}"}`, 201, "template"),
		"DELETE /api/v1/templates/{event}/{channel}": admin("DELETE", "/api/v1/templates/parcel_ready/sms?carrier=acme", "", 204, "template"),
		"POST /api/v1/renew": func() result {
			cfg := deviceTLS.Clone()
			cfg.Certificates = []tls.Certificate{dev.TLS}
			csr, _, err := pki.NewKeyAndCSR("EV-2")
			require.NoError(t, err)
			_, err = apiclient.NewTLS(h.DeviceURL, "", cfg).Renew(ctx, csr)
			require.NoError(t, err)
			return result{200, "EV-2", "certificate"}
		},
	}

	routes := append(web.NewAPI(web.Deps{}).Routes(), web.DeviceRoutes()...)
	sort.Strings(routes)
	// Order matters for a few (create before update before delete).
	order := func(r string) int {
		switch {
		case strings.HasPrefix(r, "POST"), strings.HasPrefix(r, "PUT /api/v1/lockers"):
			return 0
		case strings.HasPrefix(r, "PATCH"), strings.HasPrefix(r, "PUT"):
			return 1
		}
		return 2
	}
	sort.SliceStable(routes, func(i, j int) bool { return order(routes[i]) < order(routes[j]) })
	// POSTs that change nothing: nothing to audit.
	readOnly := map[string]bool{"POST /api/v1/templates/preview": true}
	for _, rt := range routes {
		if strings.HasPrefix(rt, "GET ") || readOnly[rt] {
			continue
		}
		do, ok := cases[rt]
		if !ok {
			t.Errorf("%s changes something but has no case in TestEveryChangeIsAudited: record its change with audit.Record "+
				"in the change's transaction and add a case", rt)
			continue
		}
		var before int64
		require.NoError(t, h.App.Pool.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM audit_log`).Scan(&before))
		res := do()
		var n int
		var names, types string
		require.NoError(t, h.App.Pool.QueryRow(ctx, `SELECT count(*), coalesce(string_agg(DISTINCT actor_name, ','), ''),
			coalesce(string_agg(DISTINCT object_type, ','), '') FROM audit_log WHERE id > $1`, before).Scan(&n, &names, &types))
		require.GreaterOrEqual(t, n, 1, "%s wrote no audit record", rt)
		require.Contains(t, strings.Split(names, ","), res.actor, fmt.Sprintf("%s: actors %s", rt, names))
		require.Contains(t, strings.Split(types, ","), res.objType, fmt.Sprintf("%s: object types %s", rt, types))
	}
}
