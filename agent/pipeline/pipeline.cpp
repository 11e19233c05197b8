#include "pipeline.h"

#include "checkpoint.h"

#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>
#include <type_traits>
#include <variant>

#include "errors.h"
#include "log.h"
#include "version.h"

namespace egressd {
namespace {

constexpr uint64_t kMs = 1'000'000;

const char* event_type_name(const Event& ev) {
  return std::visit(
      [](const auto& e) -> const char* {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, ExecRecord>) return "exec";
        if constexpr (std::is_same_v<T, fork_event>) return "fork";
        if constexpr (std::is_same_v<T, exit_event>) return "exit";
        if constexpr (std::is_same_v<T, connect_event>) return "connect";
        if constexpr (std::is_same_v<T, connect_result_event>) return "connect_result";
        if constexpr (std::is_same_v<T, sock_close_event>) return "close";
        if constexpr (std::is_same_v<T, PayloadRecord>) return "payload";
      },
      ev);
}

FeatureReport checked_features(const std::string& proc_root) {
  FeatureReport f = probe_features(proc_root);
  if (auto problem = f.first_problem(); !problem.empty()) throw UnusableHere(problem);
  return f;
}

}  // namespace

Pipeline::Pipeline(PipelineOptions opts)
    : opts_(std::move(opts)),
      features_(checked_features(opts_.proc_root)),
      host_(HostInfo::current(EGRESSD_VERSION)),
      tools_(merge_tools(builtin_tools(), opts_.tools)),
      counters_(opts_.series),
      procs_(opts_.proc_root, host_.boot_id.substr(0, 8), &tools_, &redactor_) {
  for (const auto& p : opts_.redact_patterns) redactor_.add_pattern(p);
}

void Pipeline::load(EventSink& sink) {
  flows_ = std::make_unique<FlowTable>(
      FlowTableDeps{procs_, counters_, sink, host_, clock_, &tools_, opts_.destination_label,
                    opts_.summary_interval_ms * 1'000'000ULL});
  opts_.load.cgroup_path = features_.cgroup2_path;
  bpf_ = BpfPrograms::load(opts_.load);
  // A process's tool, once known, goes to the kernel: it tags the sockets
  // that process (and, for tools that say so, its children) opens.
  procs_.set_tool_listener([this](const Process& p) {
    bpf_->set_process_tool(p.key.tgid, p.key.start_ns, p.tool_id, tools_.follows_children(p.tool_id));
  });
}

Pipeline::~Pipeline() {
  if (ring_) ring_buffer__free(ring_);
}

std::vector<ExecRecord> Pipeline::attach() {
  const uint64_t attach_ns = clock_.boot_now_ns();
  bpf_->attach();
  if (bpf_->adopted()) flows_->adopt_counts_before(attach_ns);
  if (PinnedState* store = bpf_->store()) {
    // Scrapes see checkpointed totals only: what a next agent restores is
    // never below what was seen.
    counters_.hold_until_published(true);
    ledger_ = std::make_unique<CountedLedger>(*store);
    flows_->set_ledger(ledger_.get());
    if (bpf_->adopted()) {
      std::string why;
      auto blob = store->read_checkpoint(&why);
      auto checkpoint = blob ? decode_checkpoint(*blob, &why) : std::nullopt;
      if (!checkpoint && store->committed())
        log_warning("the metric totals of the agent before this one are not carried over: {}", why);
      uint64_t unknown = 0;
      counters_.restore(ledger_->adopt(checkpoint ? checkpoint->series : decltype(checkpoint->series){}, &unknown),
                        attach_ns);
      if (unknown)
        log_warning("{} flows of the agent before this one name a series it did not keep; their last counts are "
                    "not carried over", unknown);
      stale_entries_ = true;
    }
    counters_.publish();
  }
  std::vector<ExecRecord> running = bpf_->running_processes();
  if (bpf_->adopted() && ledger_) replay_process_records(running, attach_ns);
  for (const auto& rec : running) procs_.on_exec(rec);
  ring_ = ring_buffer__new(
      bpf_->ring_buffer_fd(),
      [](void* ctx, void* data, size_t len) {
        static_cast<Pipeline*>(ctx)->handle(data, len);
        return 0;
      },
      this, nullptr);
  if (!ring_) throw LoaderError("open ring buffer", errno);
  flows_->wait_for_images(true);
  return running;
}

// The exec and fork records the earlier agent read (it may have been killed
// before anything else knew them): into the process table, oldest first. The
// processes among them that have exited are given the adoption as their exit
// time (running_processes() says which are alive).
void Pipeline::replay_process_records(const std::vector<ExecRecord>& running, uint64_t now_ns) {
  std::vector<std::pair<uint64_t, Event>> records;  // exec and fork records only (keep_process_record)
  for (const std::string& raw : bpf_->store()->all_process_records()) {
    auto decoded = decode_event(raw.data(), raw.size());
    auto* ev = std::get_if<Event>(&decoded);
    if (const auto* exec = ev ? std::get_if<ExecRecord>(ev) : nullptr)
      records.emplace_back(exec->fixed.hdr.ts_boot_ns, std::move(*ev));
    else if (const auto* fork = ev ? std::get_if<fork_event>(ev) : nullptr)
      records.emplace_back(fork->hdr.ts_boot_ns, std::move(*ev));
  }
  std::stable_sort(records.begin(), records.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<ProcKey> replayed;
  for (const auto& [_, ev] : records) {
    if (const auto* exec = std::get_if<ExecRecord>(&ev)) {
      procs_.on_exec(*exec);
      replayed.push_back({exec->fixed.proc.tgid, exec->fixed.proc.start_ns});
    } else if (const auto* fork = std::get_if<fork_event>(&ev)) {
      procs_.on_fork(*fork);
      replayed.push_back({fork->child.tgid, fork->child.start_ns});
    }
  }
  std::set<std::pair<uint32_t, uint64_t>> alive;
  for (const auto& rec : running) alive.insert({rec.fixed.proc.tgid, rec.fixed.proc.start_ns});
  for (const ProcKey& k : replayed)
    if (!alive.count({k.tgid, k.start_ns})) procs_.on_exit(k, now_ns);
}

void Pipeline::keep_process_record(const Event& ev, const void* data, size_t len) {
  bool kept = true;
  if (const auto* exec = std::get_if<ExecRecord>(&ev))
    kept = bpf_->store()->set_process_record(exec->fixed.proc.tgid, exec->fixed.proc.start_ns, data, len);
  else if (const auto* fork = std::get_if<fork_event>(&ev))
    kept = bpf_->store()->set_process_record(fork->child.tgid, fork->child.start_ns, data, len);
  if (!kept) ++stats_.process_record_failures;
}

void Pipeline::handle(const void* data, size_t len) {
  ++stats_.records;
  auto decoded = decode_event(data, len);
  if (auto* err = std::get_if<DecodeError>(&decoded)) {
    ++stats_.decode_errors[std::string("decode_") + decode_error_name(*err)];
    return;
  }
  const Event& ev = std::get<Event>(decoded);
  apply(ev);
  if (ledger_) keep_process_record(ev, data, len);
  ++stats_.ring_events[event_type_name(ev)];
  if (hook_) hook_(ev);
}

void Pipeline::apply(const Event& ev) {
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, ExecRecord>) {
          procs_.on_exec(e);
        } else if constexpr (std::is_same_v<T, fork_event>) {
          procs_.on_fork(e);
        } else if constexpr (std::is_same_v<T, exit_event>) {
          procs_.on_exit({e.proc.tgid, e.proc.start_ns}, e.hdr.ts_boot_ns);
        } else if constexpr (std::is_same_v<T, connect_event>) {
          flows_->on_connect(e);
        } else if constexpr (std::is_same_v<T, connect_result_event>) {
          flows_->on_connect_result(e);
        } else if constexpr (std::is_same_v<T, sock_close_event>) {
          flows_->on_close(e);
        } else if constexpr (std::is_same_v<T, PayloadRecord>) {
          flows_->on_payload(e);
        }
      },
      ev);
}

// Reads flow_extra (and, with live_sockets, every open socket's counters),
// ends the flows whose socket closed and deletes their entries from the
// kernel map.
void Pipeline::poll_counters(bool live_sockets) {
  if (live_sockets) flows_->on_live_sockets(bpf_->live_sockets());
  auto extra = bpf_->extra_flows();
  auto ended = flows_->on_extra_flows(extra);
  bpf_->delete_extra_flows(ended);
  stats_.flow_extra_entries = extra.size();
}

// The metric totals into the pinned store, then published to scrapes (the
// counts of each flow went to the store as they were added).
void Pipeline::checkpoint(uint64_t now) {
  checkpointed_changes_ = counters_.changes();
  checkpointed_ns_ = now;
  PinnedState* store = bpf_->store();
  if (!store) return;
  const auto started = std::chrono::steady_clock::now();
  std::string why;
  auto series = counters_.snapshot();
  if (store->write_checkpoint(encode_checkpoint({series, now}), &why)) {
    ledger_->committed(series);
  } else {
    if (stats_.checkpoint_failures++ == 0)
      log_warning("cannot checkpoint the metric totals: {}; a restarted agent starts them again from 0", why);
    counters_.hold_until_published(false);
  }
  counters_.publish();
  stats_.ledger_write_failures = ledger_->write_failures();
  const auto took = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started).count());
  checkpoint_gap_ns_ = std::max(kCheckpointEveryNs, 10 * took);
  stats_.checkpoint_ns = took;
}

uint64_t Pipeline::step() {
  const int polled = ring_buffer__poll(ring_, static_cast<int>(opts_.drain_interval_ms));
  if (polled < 0 && polled != -EINTR) {
    // The ring buffer's epoll failed; the records stay in the ring and are
    // read below. Said once, counted always.
    if (stats_.poll_errors++ == 0) log_warning("reading the ring buffer: {}; retrying each round", strerror(-polled));
    std::this_thread::sleep_for(std::chrono::milliseconds(opts_.drain_interval_ms));  // no busy loop
  }
  ring_buffer__consume(ring_);
  const uint64_t now = clock_.boot_now_ns();
  if (const int64_t moved = clock_.resync(); moved <= -Clock::kStepNs || moved >= Clock::kStepNs) {
    ++stats_.clock_steps;
    log_warning("the wall clock was stepped by {:+.3f} s; events are stamped with the new time",
                static_cast<double>(moved) / 1e9);
  }
  const bool full_poll = now >= next_poll_ns_;
  if (full_poll || flows_->extra_ends_pending()) {
    poll_counters(full_poll);
    if (full_poll) {
      next_poll_ns_ = now + opts_.poll_interval_ms * kMs;
      counters_.expire(now, flows_->live_series());
      if (stale_entries_) {
        // Every flow the earlier agent left that still exists is open here
        // now: the ledger entries of the others go with this checkpoint.
        ledger_->forget_stale([this](const CountedKey& k) { return flows_->has_flow(k); });
        stale_entries_ = false;
      }
      checkpoint(now);
    }
  }
  // Counts moved by events (a flow ended, a connection made) reach scrapes
  // within kCheckpointEveryNs, not at the next full poll; a checkpoint that
  // took long (many series) spaces them out so it costs under a tenth of the loop.
  if (counters_.changes() != checkpointed_changes_ && now >= checkpointed_ns_ + checkpoint_gap_ns_)
    checkpoint(now);
  flows_->emit_updates(now, opts_.update_interval_ms * kMs);
  std::function<void(ProcKey)> forgotten;  // its pinned exec record goes too
  if (ledger_) forgotten = [this](ProcKey k) { bpf_->store()->forget_process_record(k.tgid, k.start_ns); };
  procs_.expire(now, opts_.keep_exited_ms * kMs, forgotten);
  return now;
}

uint64_t Pipeline::finish(const char* reason) {
  ring_buffer__consume(ring_);
  flows_->wait_for_images(false);  // the last read: nothing comes after it
  poll_counters(true);
  const uint64_t end = clock_.boot_now_ns();
  flows_->flush_all(end, reason);
  checkpoint(end);
  return end;
}

}  // namespace egressd
