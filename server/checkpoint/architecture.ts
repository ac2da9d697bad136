/**
 * The shape of a Stable Diffusion model as its tensors describe it (never its file name): what the graph builders
 * need to emit the text encoder, UNet and VAE of any channel count, including the tiny test checkpoints.
 */

export type ModelFamily = 'sd1' | 'sd2' | 'sd2-v';
export type Prediction = 'epsilon' | 'v_prediction';

/** LDM's openaimodel.UNetModel, as far as SD-1.x/2.x use it. */
export interface UnetArchitecture {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly modelChannels: number;
  /** Channel multiplier per level (SD: [1, 2, 4, 4]). */
  readonly channelMult: readonly number[];
  /** ResBlocks per level on the way down (SD: 2); the way up has one more. */
  readonly numResBlocks: number;
  /** Per level: whether its ResBlocks are followed by a SpatialTransformer (SD: [true, true, true, false]). */
  readonly attentionLevels: readonly boolean[];
  /** BasicTransformerBlocks per SpatialTransformer (SD: 1). */
  readonly transformerDepth: number;
  /** Width of the cross-attention context (768 for CLIP ViT-L/14, 1024 for OpenCLIP ViT-H). */
  readonly contextDim: number;
  /** SD-1: a fixed head count (8); SD-2: a fixed head width (64) and heads = channels / 64. Exactly one is set. */
  readonly numHeads: number | null;
  readonly headChannels: number | null;
  /** SD-2: proj_in/proj_out are Linear; SD-1: 1×1 Conv. */
  readonly linearProjection: boolean;
}

/** LDM's AutoencoderKL decoder (and encoder) as SD uses it. */
export interface VaeArchitecture {
  /** Base channels (SD: 128). */
  readonly ch: number;
  /** SD: [1, 2, 4, 4]. */
  readonly chMult: readonly number[];
  /** ResBlocks per level in the encoder (SD: 2); the decoder has one more per level. */
  readonly numResBlocks: number;
  /** Latent channels (SD: 4). */
  readonly zChannels: number;
  /** Image channels (SD: 3). */
  readonly outChannels: number;
  /** The latent scale the sampler multiplies by (SD: 0.18215). */
  readonly scalingFactor: number;
  /** Whether the encoder half is present in the file (img2img later). */
  readonly hasEncoder: boolean;
}

/** CLIP ViT-L/14 text (SD-1, transformers naming) or OpenCLIP ViT-H text (SD-2). */
export interface TextEncoderArchitecture {
  readonly kind: 'clip' | 'open-clip';
  readonly width: number;
  readonly layers: number;
  /** Head width is 64 in both real encoders; heads = width / 64 (tiny test models follow the same rule). */
  readonly heads: number;
  readonly vocabSize: number;
  readonly maxPositions: number;
  /** CLIP: quick_gelu; OpenCLIP ViT-H: exact gelu. */
  readonly activation: 'quick_gelu' | 'gelu';
}

export interface ModelArchitecture {
  readonly family: ModelFamily;
  readonly unet: UnetArchitecture;
  readonly vae: VaeArchitecture;
  readonly textEncoder: TextEncoderArchitecture;
}
