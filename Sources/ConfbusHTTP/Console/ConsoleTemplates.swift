/// The console's templates (Mustache), compiled into the binary. `{{x}}` escapes HTML; the one
/// unescaped tag is the layout's `{{{body}}}`, which is a fragment rendered by these same templates,
/// so every value reaches the page as text.
enum ConsoleTemplates {
    static let layout = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{title}} · confbus</title>
        <link rel="stylesheet" href="/ui/assets/console.css">
        <script src="/ui/assets/console.js" defer></script>
        </head>
        <body>
        <header>
          <a class="brand" href="/ui/">confbus</a>
          <nav><a href="/ui/">Fleet</a> <a href="/ui/audit">Audit</a></nav>
          <form id="sign-in" class="sign-in">
            <label>Token <input type="password" name="token" autocomplete="off" placeholder="admin or read token"></label>
            <button type="submit">Sign in</button>
            <span class="who" id="who">read-only</span>
            <button type="button" id="sign-out" hidden>Sign out</button>
          </form>
        </header>
        <main id="view" data-fragment="{{fragment}}">
        {{{body}}}
        </main>
        </body>
        </html>
        """

    static let fleet = """
        {{#problem}}<p class="problem" role="alert">{{.}}</p>{{/problem}}
        {{^problem}}
        <h1 data-follow="*">Fleet</h1>
        <p class="meta">{{count}} services{{#stale}} · <strong>stale</strong>: the database is unreachable, this is what this node last read{{/stale}}</p>
        <label class="filter">Filter <input type="search" id="filter" placeholder="service name or state"></label>
        <table class="fleet">
        <thead><tr><th>Service</th><th>Released</th><th>Updated</th><th>Instances</th><th>Lagging</th><th>State</th><th>Rollout</th></tr></thead>
        <tbody>
        {{#services}}
        <tr data-service="{{name}}" data-state="{{state}}">
          <td><a href="/ui/services/{{name}}">{{name}}</a></td>
          <td>{{#version}}v{{version}}{{/version}}{{^version}}—{{/version}}</td>
          <td>{{updated}}</td>
          <td>{{instances}}</td>
          <td>{{lagging}}</td>
          <td><span class="state state-{{state}}">{{state}}</span>{{#errors}}<br><small>{{message}}{{#location}} ({{location}}){{/location}}</small>{{/errors}}</td>
          <td>{{#rollout}}<a href="/ui/rollouts/{{id}}">step {{step}} of {{steps}}: v{{candidate}}</a>{{/rollout}}</td>
        </tr>
        {{/services}}
        </tbody>
        </table>
        {{/problem}}
        """

    static let service = """
        {{#problem}}<p class="problem" role="alert">{{.}}</p>{{/problem}}
        {{^problem}}
        <h1 data-follow="{{name}}">{{name}}</h1>
        <p class="meta">version {{version}} · {{checksum}} · updated {{updated}}{{#masked}} · secrets masked for this reader{{/masked}}{{#stale}} · <strong>stale</strong>{{/stale}}</p>
        {{#diverged}}<p class="problem">diverged: {{reason}}</p>{{/diverged}}
        <section>
        <h2>Document</h2>
        <table class="values">
        <thead><tr><th>Key</th><th>Value</th><th>Layer</th><th>Source</th></tr></thead>
        <tbody>
        {{#values}}<tr data-pointer="{{pointer}}"><td><code>{{pointer}}</code></td><td><code>{{value}}</code></td><td>{{#layer}}<span class="layer layer-{{kind}}">{{layer}}</span>{{/layer}}{{^layer}}—{{/layer}}</td><td>{{source}}</td></tr>{{/values}}
        </tbody>
        </table>
        {{#hasFlags}}
        <h2>Feature flags</h2>
        <table class="flags">
        <thead><tr><th>Flag</th><th>Enabled</th><th>Rollout %</th><th>Variants</th><th>Rules, in order</th></tr></thead>
        <tbody>
        {{#flags}}<tr data-flag="{{pointer}}"><td><code>{{pointer}}</code></td><td>{{enabled}}</td><td>{{percentage}}</td><td>{{variants}}</td><td>{{#rules}}<code>{{.}}</code><br>{{/rules}}</td></tr>{{/flags}}
        </tbody>
        </table>
        {{/hasFlags}}
        <details><summary>As JSON</summary>
        <pre class="document">{{document}}</pre>
        </details>
        </section>
        {{#editable}}
        <section class="edit">
        <h2>Override layer</h2>
        <p class="meta">JSON or YAML. Preview validates it (<code>POST /v1/validate</code>) and shows the diff; Apply commits it as a
        batch with your reason, audited as any write.</p>
        <form id="edit" data-service="{{name}}">
          <textarea name="layer" rows="10" spellcheck="false">{{layer}}</textarea>
          <label>Reason <input name="reason" required placeholder="why"></label>
          <button type="button" id="preview">Preview</button>
          <button type="submit" id="apply" disabled>Apply</button>
        </form>
        <div id="edit-result" role="status"></div>
        <h2>Roll back</h2>
        <form id="rollback" data-service="{{name}}">
          <label>To version <select name="version">{{#history}}<option value="{{version}}">v{{version}} · {{source}} · {{created}}</option>{{/history}}</select></label>
          <label>Reason <input name="reason" required placeholder="why"></label>
          <button type="submit">Roll back</button>
        </form>
        <div id="rollback-result" role="status"></div>
        </section>
        {{/editable}}
        <section>
        <h2>Instances</h2>
        {{^instances}}<p class="meta">none registered</p>{{/instances}}
        {{#hasInstances}}
        <table>
        <thead><tr><th>Instance</th><th>Health</th><th>Applied</th><th>Lag</th><th>Last ack</th><th>Last seen</th></tr></thead>
        <tbody>
        {{#instances}}<tr><td>{{instance}}</td><td>{{health}}</td><td>{{applied}}</td><td>{{lag}}</td><td>{{ack}}</td><td>{{seen}}</td></tr>{{/instances}}
        </tbody>
        </table>
        {{/hasInstances}}
        </section>
        <section>
        <h2>History</h2>
        <table>
        <thead><tr><th>Version</th><th>Source</th><th>Author</th><th>Reason</th><th>When</th><th>Checksum</th><th></th></tr></thead>
        <tbody>
        {{#history}}<tr><td>v{{version}}</td><td>{{source}}</td><td>{{author}}</td><td>{{reason}}</td><td>{{created}}</td><td><code>{{short}}</code></td><td>{{#previous}}<a href="/ui/services/{{name}}/diff?from={{previous}}&amp;to={{version}}">diff</a>{{/previous}}</td></tr>{{/history}}
        </tbody>
        </table>
        </section>
        {{/problem}}
        """

    static let diff = """
        {{#problem}}<p class="problem" role="alert">{{.}}</p>{{/problem}}
        {{^problem}}
        <h1><a href="/ui/services/{{name}}">{{name}}</a>: v{{from}} → v{{to}}</h1>
        <form class="versions" method="get" action="/ui/services/{{name}}/diff">
          <label>From <input type="number" name="from" min="1" value="{{from}}"></label>
          <label>To <input type="number" name="to" min="1" value="{{to}}"></label>
          <button type="submit">Compare</button>
        </form>
        {{^changes}}<p class="meta">No difference.</p>{{/changes}}
        {{#hasChanges}}
        <table class="diff">
        <thead><tr><th>Path</th><th>v{{from}}</th><th>v{{to}}</th></tr></thead>
        <tbody>
        {{#changes}}<tr class="change-{{op}}"><td><code>{{path}}</code></td><td><pre>{{old}}</pre></td><td><pre>{{new}}</pre></td></tr>{{/changes}}
        </tbody>
        </table>
        {{/hasChanges}}
        {{/problem}}
        """

    static let audit = """
        {{#problem}}<p class="problem" role="alert">{{.}}</p>{{/problem}}
        {{^problem}}
        <h1>Audit log</h1>
        <p class="meta">the newest {{count}} entries</p>
        <table class="audit">
        <thead><tr><th>When</th><th>Actor</th><th>Action</th><th>Outcome</th><th>Services</th><th>Reason</th><th>Detail</th></tr></thead>
        <tbody>
        {{#entries}}<tr class="outcome-{{outcome}}"><td>{{at}}</td><td>{{actor}}</td><td>{{action}}</td><td>{{outcome}}</td><td>{{services}}</td><td>{{reason}}</td><td>{{detail}}</td></tr>{{/entries}}
        </tbody>
        </table>
        {{/problem}}
        """

    static let rollout = """
        {{#problem}}<p class="problem" role="alert">{{.}}</p>{{/problem}}
        {{^problem}}
        <h1 data-follow="{{service}}"{{#timeLeft}} data-tick{{/timeLeft}}>Rollout of <a href="/ui/services/{{service}}">{{service}}</a>: v{{stable}} → v{{candidate}}</h1>
        <p class="meta"><span class="state state-{{phase}}" id="rollout-phase">{{phase}}</span> · step {{step}} of {{stepCount}} · started by {{actor}} at {{started}}{{#reason}} · {{reason}}{{/reason}}</p>
        {{#rollbackReason}}<p class="problem">{{.}}</p>{{/rollbackReason}}
        <ol class="steps">{{#steps}}<li class="{{#current}}current{{/current}}{{#done}}done{{/done}}">{{percent}} %</li>{{/steps}}</ol>
        <p class="counts"><span id="applied">{{applied}}</span> applied · <span id="rejected">{{rejected}}</span> rejected · <span id="pending">{{pending}}</span> pending{{#timeLeft}} · {{.}} left in this phase{{/timeLeft}} · bake {{bake}}, ack timeout {{ackTimeout}}, at most {{maxRejected}} rejected</p>
        <table>
        <thead><tr><th>Cohort member</th><th>Answer</th><th>Detail</th></tr></thead>
        <tbody>{{#members}}<tr class="answer-{{answer}}"><td>{{instance}}</td><td>{{answer}}</td><td>{{detail}}</td></tr>{{/members}}</tbody>
        </table>
        {{#operable}}
        <form id="rollout-action" data-rollout="{{id}}">
          <label>Reason <input name="reason" required placeholder="why"></label>
          <button type="submit" data-action="promote">Promote</button>
          <button type="submit" data-action="abort">Abort</button>
        </form>
        <div id="rollout-action-result" role="status"></div>
        {{/operable}}
        {{/problem}}
        """
}
