import ConfbusCore
import Foundation
import Testing

/// The console under `/ui/` (issue 13, first part): server-rendered pages and fragments, read
/// through the same checks as the API, every value escaped, a strict Content-Security-Policy.
/// (Driving it in a headless browser comes with the edits and live updates.)
@Suite(.requiresPostgres, .requiresMQTT)
struct ConsoleTests {
    @Test(.timeLimit(.minutes(1)))
    func theFleetAndAServicePageShowWhatAnOpenReaderMaySee() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }

        let fleet = try await confbus.get("/ui/")
        #expect(fleet.status == 200)
        #expect(fleet.headers["content-type"]?.hasPrefix("text/html") == true)
        let policy = try #require(fleet.headers["content-security-policy"])
        #expect(policy.contains("default-src 'none'") && policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"))
        for service in ["billing-api", "feature-flags", "report-worker"] {
            #expect(fleet.text.contains(#"<a href="/ui/services/\#(service)">\#(service)</a>"#))
        }
        #expect(fleet.text.contains(#"data-fragment="/ui/fragments/fleet""#))
        #expect(!fleet.text.contains("<script>") && fleet.text.contains(#"<script src="/ui/assets/console.js" defer></script>"#))

        // An open reader sees billing-api's password masked, as on the API.
        let page = try await confbus.get("/ui/services/billing-api")
        #expect(page.status == 200)
        #expect(page.text.contains("secrets masked for this reader"))
        #expect(page.text.contains("&quot;password&quot;: &quot;***&quot;"))
        #expect(page.text.contains("<td>v1</td><td>files</td>"))
        #expect(try await confbus.get("/ui/services/nothing-here").status == 404)
        #expect(try await confbus.get("/ui/services/Bad%20Name").status == 400)

        let script = try await confbus.get("/ui/assets/console.js")
        #expect(script.status == 200 && script.headers["content-type"]?.hasPrefix("text/javascript") == true)
        #expect(script.text.contains("sessionStorage"))
        #expect(try await confbus.get("/ui/assets/console.css").status == 200)
    }

    /// A hostile value in a config and in a reason shows as text, never as markup.
    @Test(.timeLimit(.minutes(1)))
    func aHostileValueRendersAsText() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let patched = try await confbus.request("PATCH", "/v1/config/report-worker/override",
                                                headers: AdminTests.admin(["X-Confbus-Reason": "<img src=x onerror=alert(1)>"]),
                                                body: Data(#"{"output_bucket": "s3://reports/<script>alert(1)</script>"}"#.utf8))
        try #require(patched.status == 200, "\(patched.text)")
        let page = try await confbus.get("/ui/fragments/services/report-worker")
        #expect(page.status == 200)
        #expect(!page.text.contains("<script>alert(1)</script>") && !page.text.contains("<img src=x"))
        #expect(page.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
        #expect(page.text.contains("&lt;img src=x onerror=alert(1)&gt;"))
    }

    /// With reads closed, the shell asks for a token; a fragment fetched with one shows what that
    /// token may see — a scoped one only its services, as on the API.
    @Test(.timeLimit(.minutes(1)))
    func closedReadsAskForATokenAndAScopedOneSeesOnlyItsServices() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker,
                                                             environment: ["CONFBUS_READ_TOKENS": "dash=open-sesame,billing:billing-api=b-secret"])
        defer { confbus.stop() }
        let shell = try await confbus.get("/ui/")
        #expect(shell.status == 200)
        #expect(shell.text.contains("Sign in with a read or admin token"))
        #expect(!shell.text.contains("billing-api"))
        #expect(try await confbus.get("/ui/fragments/fleet").status == 401)

        let all = try await confbus.get("/ui/fragments/fleet", headers: ["Authorization": "Bearer open-sesame"])
        #expect(all.status == 200 && all.text.contains("report-worker") && all.text.contains("billing-api"))
        let scoped = try await confbus.get("/ui/fragments/fleet", headers: ["Authorization": "Bearer b-secret"])
        #expect(scoped.text.contains("billing-api") && !scoped.text.contains("report-worker"))
        #expect(try await confbus.get("/ui/fragments/services/report-worker", headers: ["Authorization": "Bearer b-secret"]).status == 404)
        // The service's own token sees its secrets in full.
        let own = try await confbus.get("/ui/fragments/services/billing-api", headers: ["Authorization": "Bearer b-secret"])
        #expect(own.status == 200 && !own.text.contains("secrets masked"))
    }

    /// A diff between two versions, side by side, with a secret masked for an open reader; the
    /// audit log for admins only.
    @Test(.timeLimit(.minutes(1)))
    func aDiffSideBySideAndTheAuditLogForAdmins() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let patched = try await confbus.request("PATCH", "/v1/config/billing-api/override",
                                                headers: AdminTests.admin(["X-Confbus-Reason": "bigger pool"]),
                                                body: Data(#"{"database": {"pool_size": 41, "password": "n3w-s3cret-long-enough"}}"#.utf8))
        try #require(patched.status == 200, "\(patched.text)")

        let page = try await confbus.get("/ui/services/billing-api")
        #expect(page.text.contains(#"<h1 data-follow="billing-api">"#))
        #expect(page.text.contains(#"<a href="/ui/services/billing-api/diff?from=1&amp;to=2">diff</a>"#))
        let diff = try await confbus.get("/ui/services/billing-api/diff?from=1&to=2")
        #expect(diff.status == 200)
        #expect(diff.text.contains(#"<tr class="change-replace"><td><code>/database/pool_size</code></td><td><pre>10</pre></td><td><pre>41</pre></td></tr>"#),
                "\(diff.text)")
        #expect(diff.text.contains("/database/password") && !diff.text.contains("n3w-s3cret"))
        #expect(try await confbus.get("/ui/services/billing-api/diff?from=1&to=9").status == 404)
        #expect(try await confbus.get("/ui/services/billing-api/diff?from=0&to=1").status == 400)

        let anonymous = try await confbus.get("/ui/audit")
        #expect(anonymous.text.contains("Sign in with an admin token") && !anonymous.text.contains("bigger pool"))
        #expect(try await confbus.get("/ui/fragments/audit").status == 401)
        let audit = try await confbus.get("/ui/fragments/audit", headers: AdminTests.admin())
        #expect(audit.status == 200 && audit.text.contains("bigger pool") && audit.text.contains("<td>ops</td>"))
    }
}

/// Each value of a service page with the layer and source that set it, as the version was committed.
extension ConsoleTests {
    @Test(.timeLimit(.minutes(1)))
    func eachValueShowsItsLayerAndSource() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker,
                                                             environment: ["CONFBUS_OVERRIDE__BILLING_API__DATABASE__POOL_SIZE": "50"])
        defer { confbus.stop() }
        let patched = try await confbus.request("PATCH", "/v1/config/billing-api/override", headers: AdminTests.admin(["X-Confbus-Reason": "port"]),
                                                body: Data(#"{"http": {"port": 9091}}"#.utf8))
        try #require(patched.status == 200, "\(patched.text)")
        let page = try await confbus.get("/ui/fragments/services/billing-api")
        try #require(page.status == 200)
        func row(_ pointer: String) -> String {
            guard let start = page.text.range(of: #"<tr data-pointer="\#(pointer)">"#),
                  let end = page.text.range(of: "</tr>", range: start.upperBound..<page.text.endIndex) else { return "" }
            return String(page.text[start.upperBound..<end.lowerBound])
        }
        #expect(row("/database/host").contains(#"<span class="layer layer-defaults">defaults</span></td><td>services/billing-api/defaults.yaml:2:3</td>"#),
                "\(row("/database/host"))")
        #expect(row("/log_level").contains(#"layer-environment">environment</span></td><td>services/billing-api/development.yaml:4:1</td>"#),
                "\(row("/log_level"))")
        #expect(row("/database/pool_size").contains("<code>50</code>")
                && row("/database/pool_size").contains(#"layer-variable">variable</span></td><td>CONFBUS_OVERRIDE__BILLING_API__DATABASE__POOL_SIZE</td>"#),
                "\(row("/database/pool_size"))")
        #expect(row("/http/port").contains("<code>9091</code>") && row("/http/port").contains(#"layer-override">override</span>"#), "\(row("/http/port"))")
        // A secret's row is there, its value masked for this open reader.
        #expect(row("/database/password").contains(#"<code>&quot;***&quot;</code>"#), "\(row("/database/password"))")
        #expect(!page.text.contains("dev-password-not-secret"))
        #expect(!page.text.contains("Feature flags"), "billing-api has none")

        // A service with flags lists them with their rules, as GET /v1/flags does.
        let flags = try await confbus.get("/ui/fragments/services/feature-flags")
        #expect(flags.text.contains(#"<tr data-flag="/flags/bulk_export"><td><code>/flags/bulk_export</code></td><td>on</td><td>0</td><td></td><td><code>group eq &quot;staff&quot; → true</code><br></td></tr>"#),
                "\(flags.text)")
        #expect(flags.text.contains(#"<td>blue 1, green 1</td>"#))
    }
}

/// The console in a real headless Chromium: its script runs, signs in, filters, follows changes
/// live, and shows hostile values as text. With `CONFBUS_CONSOLE_SCREENSHOTS=DIR` each page is
/// also saved as a PNG there (`docs/console/` holds the committed ones).
@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct ConsoleBrowserTests {
    static let screenshots = ProcessInfo.processInfo.environment["CONFBUS_CONSOLE_SCREENSHOTS"].map { URL(fileURLWithPath: $0) }

    static func shoot(_ browser: HeadlessBrowser, _ name: String) async throws {
        guard let directory = screenshots else { return }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try await browser.screenshot(to: directory.appendingPathComponent("\(name).png"))
    }

    @Test(.timeLimit(.minutes(2)))
    func theFleetFiltersAndAServicePageFollowsAPatchWithoutAReload() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let base = confbus.baseURL
        let browser = try await HeadlessBrowser()
        defer { browser.close() }

        try await browser.open("\(base)/ui/")
        #expect(try await browser.evaluate("document.querySelectorAll('tr[data-service]').length") == 3)
        try await Self.shoot(browser, "fleet")
        _ = try await browser.evaluate("""
            (() => { const f = document.getElementById('filter'); f.value = 'billing'; f.dispatchEvent(new Event('input', {bubbles: true})); })()
            """)
        #expect(try await browser.evaluate("[...document.querySelectorAll('tr[data-service]')].filter(r => !r.hidden).map(r => r.dataset.service)")
                == ["billing-api"])

        // A service page, left open: a PATCH through the API shows up without a reload.
        try await browser.open("\(base)/ui/services/report-worker")
        _ = try await browser.evaluate("window.stillTheSamePage = true")
        #expect(try await browser.evaluate("document.querySelector('pre.document').textContent.includes('\"concurrency\": ')") == true)
        #expect(try await browser.evaluate("document.querySelector('pre.document').textContent.includes('\"concurrency\": 7')") == false)
        try await Harness.eventually("the page follows the server's event stream") {
            try await browser.evaluate("document.getElementById('view').dataset.live === 'true'") == true
        }
        #expect(try await browser.evaluate("document.querySelector('tr[data-pointer=\"/concurrency\"] .layer').textContent") == "environment")
        try await Self.shoot(browser, "service")
        let patched = try await confbus.request("PATCH", "/v1/config/report-worker/override", headers: AdminTests.admin(),
                                                body: Data(#"{"concurrency": 7}"#.utf8))
        try #require(patched.status == 200, "\(patched.text)")
        try await Harness.eventually("the open page shows version 2", timeout: .seconds(10)) {
            try await browser.evaluate("document.querySelector('pre.document').textContent.includes('\"concurrency\": 7')") == true
        }
        #expect(try await browser.evaluate("document.querySelector('tr[data-pointer=\"/concurrency\"] .layer').textContent") == "override")
        #expect(try await browser.evaluate("window.stillTheSamePage === true") == true)

        try await browser.open("\(base)/ui/services/report-worker/diff?from=1&to=2")
        #expect(try await browser.evaluate("document.querySelectorAll('table.diff tbody tr').length") == 1)
        try await Self.shoot(browser, "diff")
    }

    /// A config value of `<img onerror>` and a reason of `<script>` are text in the page; a
    /// read-only visitor sees no secret and no write control.
    @Test(.timeLimit(.minutes(2)))
    func hostileValuesAreTextAndAReadOnlyVisitorSeesNoSecret() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let base = confbus.baseURL
        let patched = try await confbus.request("PATCH", "/v1/config/report-worker/override",
                                                headers: AdminTests.admin(["X-Confbus-Reason": "<script>window.pwned = 2</script>"]),
                                                body: Data(#"{"output_bucket": "s3://reports/<img src=x onerror=\"window.pwned=1\">"}"#.utf8))
        try #require(patched.status == 200, "\(patched.text)")
        let browser = try await HeadlessBrowser()
        defer { browser.close() }
        try await browser.open("\(base)/ui/services/report-worker")
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await browser.evaluate("typeof window.pwned") == "undefined")
        #expect(try await browser.evaluate("document.querySelectorAll('main img, main script').length") == 0)
        #expect(try await browser.evaluate("document.querySelector('pre.document').textContent.includes('<img src=x onerror=')") == true)
        #expect(try await browser.evaluate("document.body.textContent.includes('<script>window.pwned = 2</script>')") == true)

        try await browser.open("\(base)/ui/services/billing-api")
        #expect(try await browser.evaluate("document.querySelector('pre.document').textContent.includes('\"password\": \"***\"')") == true)
        // Nothing that writes: no form but the sign-in, no button but its own.
        #expect(try await browser.evaluate("[...document.forms].map(f => f.id)") == ["sign-in"])
        #expect(try await browser.evaluate("[...document.querySelectorAll('button')].every(b => b.closest('#sign-in'))") == true)
    }

    /// An admin edits the override layer in the form: the preview shows the diff, Apply commits a
    /// version with the reason, audited; a roll back from the same page. Writes from another
    /// origin are refused (CSRF), whatever token they carry.
    @Test(.timeLimit(.minutes(2)))
    func anAdminEditsTheOverrideLayerInTheForm() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let base = confbus.baseURL
        let browser = try await HeadlessBrowser()
        defer { browser.close() }
        try await browser.open("\(base)/ui/services/report-worker")
        #expect(try await browser.evaluate("document.getElementById('edit') === null") == true)
        try await browser.signIn("\(Confbus.adminToken)")
        try await Harness.eventually("the edit form appears for the admin") { try await browser.evaluate("document.getElementById('edit') !== null") == true }

        // An invalid layer: the preview says why, Apply stays off.
        _ = try await browser.evaluate("""
            (() => { const f = document.getElementById('edit'); f.elements.layer.value = 'concurrency: 500';
                     f.elements.layer.dispatchEvent(new Event('input', {bubbles: true})); document.getElementById('preview').click(); })()
            """)
        try await Harness.eventually("the preview refuses it") {
            try await browser.evaluate("document.getElementById('edit-result').textContent.includes('/concurrency')") == true
        }
        #expect(try await browser.evaluate("document.getElementById('apply').disabled") == true)

        _ = try await browser.evaluate("""
            (() => { const f = document.getElementById('edit'); f.elements.layer.value = 'concurrency: 6';
                     f.elements.layer.dispatchEvent(new Event('input', {bubbles: true})); f.elements.reason.value = 'six workers';
                     document.getElementById('preview').click(); })()
            """)
        try await Harness.eventually("the preview shows the diff") {
            try await browser.evaluate("document.querySelector('#edit-result table.diff') !== null && !document.getElementById('apply').disabled") == true
        }
        try await Self.shoot(browser, "edit")
        _ = try await browser.evaluate("document.getElementById('edit').requestSubmit()")
        try await Harness.eventually("the edit is committed") {
            try await Harness.versions(in: confbus.databaseURL, service: "report-worker") == [1, 2]
        }
        try await Harness.eventually("the page says so and shows version 2") {
            try await browser.evaluate("document.getElementById('edit-result').textContent.includes('Committed version 2')") == true
        }
        #expect(try await confbus.get("/v1/config/report-worker").json?["config"]?["concurrency"] == .integer(6))
        let audit = try await confbus.get("/v1/audit", headers: AdminTests.admin()).json?["entries"]?.arrayValue?.first
        #expect(audit?["reason"] == "six workers" && audit?["actor"] == "ops" && audit?["outcome"] == "accepted")

        // Roll back to version 1 from the same page.
        _ = try await browser.evaluate("""
            (() => { const f = document.getElementById('rollback'); f.elements.version.value = '1'; f.elements.reason.value = 'back';
                     f.requestSubmit(); })()
            """)
        try await Harness.eventually("the rollback is committed") {
            try await Harness.versions(in: confbus.databaseURL, service: "report-worker") == [1, 2, 3]
        }

        // CSRF: another origin is refused even with the admin token; this origin and tools are not.
        let body = Data(#"{"concurrency": 5}"#.utf8)
        let forged = try await confbus.request("PATCH", "/v1/config/report-worker/override", headers: AdminTests.admin(["Origin": "http://evil.example"]), body: body)
        #expect(forged.status == 403 && forged.json?["type"]?.stringValue?.hasSuffix("cross_origin") == true)
        #expect(try await confbus.request("PATCH", "/v1/config/report-worker/override",
                                          headers: AdminTests.admin(["Origin": base]), body: body).status == 200)
        #expect(try await Harness.versions(in: confbus.databaseURL, service: "report-worker") == [1, 2, 3, 4])
    }

    /// With reads closed the fleet asks for a token; signing in fetches it with the token, which
    /// stays in this tab's session.
    @Test(.timeLimit(.minutes(2)))
    func signingInShowsWhatTheTokenMaySee() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker,
                                                             environment: ["CONFBUS_READ_TOKENS": "dash=open-sesame,billing:billing-api=b-secret"])
        defer { confbus.stop() }
        let browser = try await HeadlessBrowser()
        defer { browser.close() }
        try await browser.open("\(confbus.baseURL)/ui/")
        #expect(try await browser.evaluate("document.querySelectorAll('tr[data-service]').length") == 0)
        try await browser.signIn("b-secret")
        try await Harness.eventually("the fleet shows what the token may see") {
            try await browser.evaluate("[...document.querySelectorAll('tr[data-service]')].map(r => r.dataset.service)") == ["billing-api"]
        }
        #expect(try await browser.evaluate("sessionStorage.getItem('confbus.token')") == "b-secret")
        #expect(try await browser.evaluate("document.cookie") == "")
        #expect(try await browser.evaluate("document.getElementById('who').textContent") == "signed in")
    }
}

extension ConsoleBrowserTests {
    /// A rollout's page shows its steps, cohort and answers as they come, and an admin aborts it
    /// there; the fleet links to it.
    @Test(.timeLimit(.minutes(2)))
    func aRolloutIsFollowedAndAbortedFromItsPage() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let fleet = try await RolloutTests.fleet(confbus, broker: broker)
        defer { Task { for instance in fleet { await instance.stop() } } }
        let started = try await RolloutTests.start(confbus, #"{"override": {"database": {"pool_size": 40}}, "steps": [20, 100], "bake": "60s"}"#)
        let id = try #require(started.json?["id"]?.stringValue, "\(started.text)")
        let base = confbus.baseURL
        let browser = try await HeadlessBrowser()
        defer { browser.close() }

        try await browser.open("\(base)/ui/")
        #expect(try await browser.evaluate("document.querySelector('a[href=\"/ui/rollouts/\(id)\"]') !== null") == true)
        try await browser.open("\(base)/ui/rollouts/\(id)")
        #expect(try await browser.evaluate("document.querySelectorAll('ol.steps li').length") == 2)
        // The cohort of step 1 (20 % of ten) applies the candidate; the page follows without a reload.
        try await Harness.eventually("the page shows the cohort's answers", timeout: .seconds(15)) {
            try await browser.evaluate("document.getElementById('applied').textContent") == "2"
        }
        #expect(try await browser.evaluate("document.getElementById('rollout-action') === null") == true, "no controls before signing in")
        try await browser.signIn("\(Confbus.adminToken)")
        try await Harness.eventually("promote and abort appear for the admin") {
            try await browser.evaluate("document.getElementById('rollout-action') !== null") == true
        }
        try await ConsoleBrowserTests.shoot(browser, "rollout")
        _ = try await browser.evaluate("""
            (() => { const f = document.getElementById('rollout-action'); f.elements.reason.value = 'not today';
                     f.requestSubmit(f.querySelector('button[data-action="abort"]')); })()
            """)
        try await Harness.eventually("the rollout is rolled back, and the page says so") {
            try await browser.evaluate("document.getElementById('rollout-phase').textContent") == "rolled_back"
        }
        let view = try await confbus.get("/v1/rollouts/\(id)").json
        #expect(view?["state"] == "rolled_back" && view?["rollback_reason"]?.stringValue?.contains("not today") == true)
    }
}
