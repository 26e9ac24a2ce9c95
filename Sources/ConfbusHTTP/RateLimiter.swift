import ConfbusCore
import Metrics
import Synchronization

/// Requests per second per token (CONTRACT §6c): a token bucket for each token that has made a
/// request, refilled at `rate` a second up to a burst of twice that. Requests without a token
/// (open reads) are not limited here. Past the limit a request is 429 with `Retry-After`.
final class RateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var refilled: ContinuousClock.Instant
    }

    let rate: Double
    let burst: Double
    private let buckets = Mutex<[String: Bucket]>([:])
    private let limited = Counter(label: "confbus_rate_limited_total", dimensions: [("api", "http")])

    /// `rate` 0 turns limiting off.
    init(rate: Int) {
        self.rate = Double(rate)
        self.burst = Double(rate) * 2
    }

    /// Takes one request from the caller's bucket, or throws the 429 that says when to retry.
    func admit(_ caller: Caller?) throws {
        guard rate > 0, let key = Self.key(caller) else { return }
        let now = ContinuousClock.now
        let wait: Double? = buckets.withLock { all in
            var bucket = all[key] ?? Bucket(tokens: burst, refilled: now)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.refilled).seconds * rate)
            bucket.refilled = now
            defer { all[key] = bucket }
            guard bucket.tokens >= 1 else { return (1 - bucket.tokens) / rate }
            bucket.tokens -= 1
            return nil
        }
        guard let wait else { return }
        limited.increment()
        throw Problem(.tooManyRequests, code: "rate_limited",
                      detail: "this token made more than \(Int(rate)) requests a second; retry later",
                      retryAfter: max(1, Int(wait.rounded(.up))))
    }

    /// A token's name (an admin's and a reader's kept apart); nil for a request without a token.
    static func key(_ caller: Caller?) -> String? {
        switch caller {
        case .admin(let name)?: "admin:" + name
        case .reader(let token?)?: "read:" + token.name
        default: nil
        }
    }
}
