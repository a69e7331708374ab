export { ConfigSchema, EXECUTION_PROVIDERS, ROLES, type Config, type ConfigInput, type ModelSourceConfig } from './schema.js';
export { loadConfig, deepMerge, envToTree, type LoadConfigOptions } from './load.js';
