#include "base/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace patchlab {
namespace {

struct LogConfig {
  std::mutex mu;
  spdlog::level::level_enum default_level = spdlog::level::warn;
  std::map<std::string, spdlog::level::level_enum, std::less<>> per_component;
  std::map<std::string, std::shared_ptr<spdlog::logger>, std::less<>> loggers;
  spdlog::sink_ptr sink;
  bool env_applied = false;
};

LogConfig& Config() {
  static LogConfig* config = new LogConfig;  // never destroyed: loggers outlive statics
  return *config;
}

std::expected<spdlog::level::level_enum, Error> ParseLevel(std::string_view name) {
  static const std::pair<std::string_view, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},   {"warn", spdlog::level::warn},
      {"error", spdlog::level::err},   {"off", spdlog::level::off}};
  for (const auto& [n, level] : kLevels) {
    if (n == name) return level;
  }
  return Fail(ErrorCode::kInvalidArgument,
              "unknown log level '{}' (use trace, debug, info, warn, error or off)", name);
}

Status ApplySpecLocked(LogConfig& config, std::string_view spec) {
  auto default_level = config.default_level;
  auto per_component = config.per_component;
  size_t pos = 0;
  while (pos <= spec.size()) {
    size_t comma = spec.find(',', pos);
    std::string_view item =
        spec.substr(pos, comma == std::string_view::npos ? spec.npos : comma - pos);
    pos = comma == std::string_view::npos ? spec.size() + 1 : comma + 1;
    if (item.empty()) continue;
    size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      auto level = ParseLevel(item);
      if (!level) return std::unexpected(level.error());
      default_level = *level;
    } else {
      auto level = ParseLevel(item.substr(eq + 1));
      if (!level) return std::unexpected(level.error());
      per_component[std::string(item.substr(0, eq))] = *level;
    }
  }
  config.default_level = default_level;
  config.per_component = std::move(per_component);
  for (auto& [name, logger] : config.loggers) {
    auto it = config.per_component.find(name);
    logger->set_level(it == config.per_component.end() ? config.default_level : it->second);
  }
  return {};
}

void ApplyEnvLocked(LogConfig& config) {
  if (config.env_applied) return;
  config.env_applied = true;
  if (const char* env = std::getenv("PATCHLAB_LOG")) {
    if (auto status = ApplySpecLocked(config, env); !status) {
      std::fprintf(stderr, "patchlab: ignoring PATCHLAB_LOG: %s\n",
                   status.error().ToString().c_str());
    }
  }
}

}  // namespace

std::shared_ptr<spdlog::logger> Log(std::string_view component) {
  LogConfig& config = Config();
  std::lock_guard lock(config.mu);
  ApplyEnvLocked(config);
  if (auto it = config.loggers.find(component); it != config.loggers.end()) return it->second;
  if (!config.sink) config.sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>(std::string(component), config.sink);
  logger->set_pattern("%H:%M:%S.%e %^%l%$ [%n] %v");
  auto it = config.per_component.find(component);
  logger->set_level(it == config.per_component.end() ? config.default_level : it->second);
  config.loggers.emplace(std::string(component), logger);
  return logger;
}

Status SetLogSpec(std::string_view spec) {
  LogConfig& config = Config();
  std::lock_guard lock(config.mu);
  ApplyEnvLocked(config);
  return ApplySpecLocked(config, spec);
}

}  // namespace patchlab
