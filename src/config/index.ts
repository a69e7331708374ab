export {
  ConfigSchema,
  EXECUTION_PROVIDERS,
  SERVER_ROLES,
  type Config,
  type ServerRole,
  type ConfigInput,
  type ModelSourceConfig,
  type ParsedConfig,
  type PoolConfig,
  type PoolSizing,
} from './schema.js';
export { loadConfig, deepMerge, envToTree, type LoadConfigOptions } from './load.js';
export { cpuBudget, type CpuBudget } from './cpus.cjs';
export { describeSizing, sizePool, QUEUE_PER_WORKER } from './sizing.js';
