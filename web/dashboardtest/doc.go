// Package dashboardtest holds the dashboard's tests in a real browser:
// Debian's headless Chromium, driven from Go with chromedp, against a whole
// hub started in-process by hubtest and lockers simulated by lockersim over
// mTLS MQTT. There is no code here besides the tests.
//
// Without Chromium (/usr/bin/chromium, or $CHROMIUM) the tests skip, or fail
// under CI=true; scripts/ensure-tools.sh chromium installs it. Screenshots go
// to $ARTIFACTS_DIR, else to testdata/screenshots (not committed).
package dashboardtest
