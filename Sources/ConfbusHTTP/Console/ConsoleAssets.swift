/// The console's stylesheet and script, compiled in (no Node toolchain, no inline code: the
/// Content-Security-Policy allows only these two files of this origin).
enum ConsoleAssets {
    static let css = """
        :root { --fg: #1d232a; --muted: #5b6672; --line: #d9dee3; --bg: #f7f8fa; --ok: #1f7a3a; --bad: #b3261e; --warn: #8a5a00; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
        header { display: flex; gap: 1.5rem; align-items: center; padding: .6rem 1.2rem; background: #fff; border-bottom: 1px solid var(--line); }
        header .brand { font-weight: 700; color: var(--fg); text-decoration: none; }
        header nav a { color: var(--fg); margin-right: 1rem; }
        .sign-in { margin-left: auto; display: flex; gap: .5rem; align-items: center; }
        .who { color: var(--muted); }
        main { padding: 1rem 1.2rem; max-width: 80rem; }
        h1 { font-size: 1.4rem; margin: .2rem 0; }
        h2 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
        .meta { color: var(--muted); margin: 0 0 .8rem; }
        .problem { color: var(--bad); background: #fdecea; padding: .5rem .8rem; border-radius: 4px; }
        table { border-collapse: collapse; width: 100%; background: #fff; }
        th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
        th { font-weight: 600; color: var(--muted); }
        .state { font-weight: 600; }
        .state-ok { color: var(--ok); }
        .state-invalid, .state-diverged { color: var(--bad); }
        .filter { display: block; margin: .4rem 0 .8rem; }
        pre.document { background: #fff; border: 1px solid var(--line); padding: .8rem; overflow: auto; max-height: 32rem; }
        code { font-size: 12px; }
        table.diff pre { margin: 0; white-space: pre-wrap; }
        tr.change-add td:nth-child(3), tr.change-replace td:nth-child(3) { background: #e8f5ec; }
        tr.change-remove td:nth-child(2), tr.change-replace td:nth-child(2) { background: #fdecea; }
        tr.outcome-refused td { color: var(--bad); }
        form.versions { display: flex; gap: .8rem; margin: .4rem 0 1rem; }
        section.edit textarea { width: 100%; font: 12px/1.4 ui-monospace, monospace; }
        section.edit form { display: flex; flex-wrap: wrap; gap: .6rem; align-items: center; }
        section.edit form textarea { flex-basis: 100%; }
        .ok-note { color: var(--ok); }
        ol.steps { display: flex; gap: .4rem; list-style: none; padding: 0; }
        ol.steps li { padding: .2rem .6rem; border: 1px solid var(--line); border-radius: 3px; background: #fff; }
        ol.steps li.done { background: #e8f5ec; }
        ol.steps li.current { border-color: var(--fg); font-weight: 600; }
        .state-rolled_back { color: var(--bad); }
        .state-completed { color: var(--ok); }
        tr.answer-rejected td { color: var(--bad); }
        .layer { padding: 0 .4rem; border-radius: 3px; background: #eef1f4; white-space: nowrap; }
        .layer-override { background: #fff1cc; }
        .layer-environment, .layer-variable { background: #e3edff; }
        .layer-schema-default { color: var(--muted); }
        table.values td:nth-child(2) code { word-break: break-all; }
        details summary { cursor: pointer; color: var(--muted); margin: .5rem 0; }
        a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, textarea:focus-visible, summary:focus-visible {
          outline: 2px solid #2d6cdf; outline-offset: 2px; }
        @media (max-width: 48rem) {
          header { flex-wrap: wrap; gap: .5rem; padding: .5rem .7rem; }
          .sign-in { margin-left: 0; width: 100%; flex-wrap: wrap; }
          main { padding: .6rem .7rem; }
          table { display: block; overflow-x: auto; }
          form.versions, section.edit form { flex-direction: column; align-items: stretch; }
        }
        """

    static let js = """
        "use strict";
        // The operator's token stays in this tab's sessionStorage; every fragment is fetched with it
        // and swapped in as the server rendered (and escaped) it.
        (() => {
          const key = "confbus.token";
          const view = document.getElementById("view");
          const form = document.getElementById("sign-in");
          const who = document.getElementById("who");
          const signOut = document.getElementById("sign-out");
          let filter = "";
          // What the last write said, shown again after each refresh until the operator types again.
          let notice = null;
          const token = () => sessionStorage.getItem(key);
          const show = () => {
            const signed = token() !== null;
            who.textContent = signed ? "signed in" : "read-only";
            signOut.hidden = !signed;
          };
          const applyFilter = () => {
            const input = document.getElementById("filter");
            if (input && input.value !== filter) input.value = filter;
            const query = filter.trim().toLowerCase();
            for (const row of view.querySelectorAll("tr[data-service]")) {
              row.hidden = query !== "" && !row.dataset.service.includes(query) && !row.dataset.state.includes(query);
            }
          };
          const refresh = async () => {
            const url = view.dataset.fragment;
            // An edit being typed is not swept away by a refresh.
            if (!url || view.querySelector("form.editing") !== null) return;
            const headers = {};
            if (token() !== null) headers["Authorization"] = "Bearer " + token();
            try {
              const answer = await fetch(url, { headers, cache: "no-store" });
              if (answer.status === 401) {
                sessionStorage.removeItem(key);
                show();
              }
              view.innerHTML = await answer.text();
              applyFilter();
              const box = notice && document.getElementById(notice.box);
              if (box) say(box, notice.text, true);
            } catch (error) {
              // The server is away: keep what is shown; the next round tries again.
            }
          };
          view.addEventListener("input", (event) => {
            if (event.target.id === "filter") { filter = event.target.value; applyFilter(); }
          });
          form.addEventListener("submit", (event) => {
            event.preventDefault();
            const value = form.elements.token.value.trim();
            if (value !== "") sessionStorage.setItem(key, value);
            form.elements.token.value = "";
            show();
            refresh();
            restartStream();
          });
          signOut.addEventListener("click", () => { sessionStorage.removeItem(key); show(); refresh(); restartStream(); });
          // Live: the server's event stream (`GET /v1/events`, read with fetch so that the token
          // travels in a header, which EventSource cannot do) names each service that changed — a
          // version, an instance's ack or health, a rollout's step — and the page is fetched again
          // when it shows that service. Without the stream, and while a rollout's clock runs, the
          // page is fetched every 5 s; otherwise every 30 s as a safety net.
          let live = false;
          let stream = null;
          let pending = null;
          const soon = () => {
            if (pending === null) pending = setTimeout(() => { pending = null; refresh(); }, 150);
          };
          const follows = (service) => {
            const marker = view.querySelector("[data-follow]");
            return marker !== null && (marker.dataset.follow === "*" || marker.dataset.follow === service);
          };
          const listen = async () => {
            for (;;) {
              stream = new AbortController();
              try {
                const headers = { Accept: "text/event-stream" };
                if (token() !== null) headers["Authorization"] = "Bearer " + token();
                const answer = await fetch("/v1/events", { headers, cache: "no-store", signal: stream.signal });
                if (answer.status !== 200 || !answer.body) throw new Error("HTTP " + answer.status);
                live = true;
                view.dataset.live = "true";
                const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
                let buffer = "";
                for (;;) {
                  const { value, done } = await reader.read();
                  if (done) break;
                  buffer += value;
                  let end;
                  while ((end = buffer.indexOf("\\n\\n")) >= 0) {
                    const data = buffer.slice(0, end).split("\\n").filter((line) => line.startsWith("data:")).map((line) => line.slice(5)).join("");
                    buffer = buffer.slice(end + 2);
                    if (data === "") continue;
                    try { if (follows(JSON.parse(data).service)) soon(); } catch (error) { /* not ours */ }
                  }
                }
              } catch (error) {
                // Away, refused or signed out: the next attempt reads with the token held then.
              }
              live = false;
              delete view.dataset.live;
              soon();
              await new Promise((done) => setTimeout(done, 2000));
            }
          };
          const restartStream = () => { if (stream !== null) stream.abort(); };
          // Edits: the layer (JSON or YAML) goes inside a YAML batch body, validated first.
          const authorized = (extra) => {
            const headers = Object.assign({}, extra);
            if (token() !== null) headers["Authorization"] = "Bearer " + token();
            return headers;
          };
          const batchBody = (service, layer, reason) => {
            const indented = layer.trim() === "" ? "      {}" : layer.split("\\n").map((line) => "      " + line).join("\\n");
            return "reason: " + JSON.stringify(reason) + "\\nupdates:\\n  - service: " + JSON.stringify(service) + "\\n    override:\\n" + indented + "\\n";
          };
          const say = (box, text, good) => {
            box.replaceChildren();
            const p = document.createElement("p");
            p.className = good ? "ok-note" : "problem";
            p.textContent = text;
            box.append(p);
          };
          const problem = async (answer) => {
            try {
              const body = await answer.json();
              const errors = (body.errors || []).map((e) => (e.path || "") + ": " + e.message).join("; ");
              return body.detail + (errors ? " — " + errors : "");
            } catch (error) { return "HTTP " + answer.status; }
          };
          const showChanges = (box, changes) => {
            box.replaceChildren();
            const table = document.createElement("table");
            table.className = "diff";
            for (const change of changes) {
              const row = table.insertRow();
              row.className = "change-" + change.op;
              for (const value of [change.path, change.old === undefined ? "" : JSON.stringify(change.old, null, 2),
                                   change.new === undefined ? "" : JSON.stringify(change.new, null, 2)]) {
                const pre = document.createElement("pre");
                pre.textContent = value;
                row.insertCell().append(pre);
              }
            }
            if (changes.length === 0) say(box, "No change to the config.", true); else box.append(table);
          };
          view.addEventListener("input", (event) => {
            const form = event.target.closest("form");
            if (form && (form.id === "edit" || form.id === "rollback" || form.id === "rollout-action")) {
              notice = null;
              form.classList.add("editing");
              if (form.id === "edit" && event.target.name === "layer") form.querySelector("#apply").disabled = true;
            }
          });
          view.addEventListener("click", async (event) => {
            if (event.target.id !== "preview") return;
            const form = event.target.form;
            const box = document.getElementById("edit-result");
            const answer = await fetch("/v1/validate", { method: "POST", body: batchBody(form.dataset.service, form.elements.layer.value, "preview"),
                                                         headers: authorized({ "Content-Type": "application/yaml" }) });
            if (answer.status === 200) {
              const result = (await answer.json()).results[0];
              showChanges(box, result.changes);
              form.querySelector("#apply").disabled = false;
            } else {
              say(box, await problem(answer), false);
            }
          });
          view.addEventListener("submit", async (event) => {
            const form = event.target;
            if (form.id === "rollout-action") {
              event.preventDefault();
              const action = event.submitter ? event.submitter.dataset.action : "abort";
              const answer = await fetch("/v1/rollouts/" + encodeURIComponent(form.dataset.rollout) + "/" + action,
                                         { method: "POST", headers: authorized({ "X-Confbus-Reason": form.elements.reason.value.trim() }) });
              if (answer.status === 200) {
                const body = await answer.json();
                notice = { box: "rollout-action-result", text: "The rollout is " + body.state + "." };
                form.classList.remove("editing");
                await refresh();
              } else {
                say(document.getElementById("rollout-action-result"), await problem(answer), false);
              }
              return;
            }
            if (form.id !== "edit" && form.id !== "rollback") return;
            event.preventDefault();
            const reason = form.elements.reason.value.trim();
            const box = document.getElementById(form.id + "-result");
            let answer;
            if (form.id === "edit") {
              answer = await fetch("/v1/batch", { method: "POST", body: batchBody(form.dataset.service, form.elements.layer.value, reason),
                                                  headers: authorized({ "Content-Type": "application/yaml" }) });
            } else {
              answer = await fetch("/v1/config/" + encodeURIComponent(form.dataset.service) + "/rollback",
                                   { method: "POST", body: JSON.stringify({ version: Number(form.elements.version.value) }),
                                     headers: authorized({ "Content-Type": "application/json", "X-Confbus-Reason": reason }) });
            }
            if (answer.status === 200) {
              const body = await answer.json();
              const version = body.version || (body.results && body.results[0].document.version);
              form.classList.remove("editing");
              notice = { box: form.id + "-result", text: "Committed version " + version + "." };
              await refresh();
            } else {
              say(box, await problem(answer), false);
            }
          });
          show();
          if (token() !== null) refresh();
          listen();
          setInterval(() => { if (!live || view.querySelector("[data-tick]") !== null) refresh(); }, 5000);
          setInterval(refresh, 30000);
        })();
        """
}
