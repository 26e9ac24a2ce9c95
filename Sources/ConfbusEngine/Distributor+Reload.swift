import ConfbusCore
import Foundation

extension Distributor {
    /// Reads the tree again and commits every service whose config changed. Each service commits
    /// on its own (one failure never aborts the rest), and each resolves again under its row lock
    /// with the override layer stored at that moment, so a reload can never revert another
    /// node's concurrent edit.
    public func reload(author: String? = nil, reason: String? = nil) async throws -> ReloadReport {
        try await reloadLock.withLock {
            let (services, treeErrors) = await self.tree.listServices()
            let allFiles = await self.tree.loadAll(services)
            // A first resolution with the layers as they are now finds what may have changed; the
            // commit below resolves again with the layer it reads under the lock.
            let hints = try await self.store.overrideLayers()
            let resolutions = await self.tree.compute { [resolver, source] in
                allFiles.concurrentMap { resolver.resolve($0, source: source, opsOverride: hints[$0.name]) }
            }
            var report = ReloadReport(treeErrors: treeErrors)
            var nowBroken: [ServiceName: [ConfbusError]] = [:]
            for (files, resolution) in zip(allFiles, resolutions) {
                let service = files.name
                guard let resolved = resolution.resolved else {
                    nowBroken[service] = resolution.errors
                    report.failed[service] = resolution.errors
                    self.logInvalid(service, resolution.errors)
                    continue
                }
                if let latest = self.cache.latest(service), latest.checksum == resolved.checksum {
                    report.unchanged.append(service)
                    continue
                }
                do {
                    switch try await self.commitFiles(files, author: author ?? self.options.author, reason: reason,
                                                      resolvedWith: (hints[service], resolved)) {
                    case .committed(let version): report.committed.append(version)
                    case .unchanged: report.unchanged.append(service)
                    }
                } catch let error as ConfbusError {
                    nowBroken[service] = [error]
                    report.failed[service] = [error]
                    self.logInvalid(service, [error])
                }
            }
            self.replaceBroken(nowBroken)
            return report
        }
    }

    private func logInvalid(_ service: ServiceName, _ errors: [ConfbusError]) {
        for error in errors {
            logger.warning("service config is invalid; the last valid version stays live",
                           metadata: ["confbus.service": "\(service)", "error.code": "\(error.code)", "error": "\(error.message)"])
        }
    }

    /// Commits what `files` resolve to with the override layer stored under the row lock.
    /// Throws the resolution's first error (or a §6b refusal) when the result is invalid.
    /// `earlier` is a resolution made before the lock with some layer: reused when the stored
    /// layer is still that one, so a reload resolves each changed service once, not twice.
    func commitFiles(_ files: ServiceFiles, author: String, reason: String?,
                     resolvedWith earlier: (layer: JSONValue?, resolved: ResolvedService)? = nil) async throws -> CommitOutcome {
        let (resolver, source) = (self.resolver, self.source)
        let audit = AuditRecord(actor: author, requestID: "files", action: "files", outcome: "accepted",
                                services: [files.name.rawValue], reason: reason)
        let outcomes = try await commit(CommitRequest(services: [files.name], audit: audit) { bases in
            let base = bases[0]
            let resolved: ResolvedService
            if let earlier, earlier.layer == base.overrideLayer {
                resolved = earlier.resolved
            } else {
                let resolution = resolver.resolve(files, source: source, opsOverride: base.overrideLayer)
                guard let fresh = resolution.resolved else {
                    throw resolution.errors.first ?? ConfbusError(code: .schemaViolation, service: files.name.rawValue, message: "the config is invalid")
                }
                resolved = fresh
            }
            return [try self.change(resolved, base: base, source: .files, author: author, reason: reason, overrideLayer: nil)]
        })
        return outcomes[0]
    }

    /// The first registration of a service with files but no version stores its version 1.
    func createFirstVersion(_ service: ServiceName) async throws(ConfbusError) {
        do {
            if let stored = try await store.latest(service) {
                cache.offer(stored)
                return
            }
            _ = try await commitFiles(await tree.load(service), author: options.author, reason: "first registration")
        } catch let error as ConfbusError {
            setBroken(service, [error])
            throw ConfbusError(code: error.code, service: service.rawValue,
                               message: "the service's config is invalid, so no version exists yet: \(error.message)")
        } catch {
            throw ConfbusError(code: .storeUnavailable, service: service.rawValue, message: "version 1 could not be stored; retry")
        }
    }
}
