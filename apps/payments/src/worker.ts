/**
 * Payment worker: processes the `payments` queue, serves no HTTP. Run as many as you like.
 *
 * Environment: REDIS_URL, PAYMENTS_NO_LOCK=1, PAYMENTS_KEY_PREFIX, PAYMENTS_QUEUE_PREFIX and the tuning in config.ts.
 */
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';
import { configFromEnv } from './config.js';

const config = configFromEnv('worker');
const app = await NestFactory.createApplicationContext(AppModule.forRoot(config));
app.enableShutdownHooks();
new Logger('Payments').log(`worker ready (pid ${process.pid}, lock: ${config.lock ? 'on' : 'OFF'})`);
